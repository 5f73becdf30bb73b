"""A memory- and time-lean selective scan for training on a CPU: Mamba's recurrence (Gu & Dao
2023, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces", sec. 3.3.2, whose fused
GPU kernel keeps the expanded states out of slow memory and recomputes them in the backward) as
a torch.autograd.Function in plain PyTorch ops.

Recurrence, per batch row, channel e (E of them) and state n (N of them), positions t = 1 .. T:

    decay_t = exp(Delta_t A)                      (E, N)
    h_t     = decay_t * h_{t-1} + (Delta_t x_t) B_t   (E, N), h_0 given or zero
    y_t     = h_t C_t                             (E)

Adjoint (reverse scan), with dy_t the incoming gradient and dh_T the gradient of the last state:

    dh_t       = dy_t C_t^T + decay_{t+1} * dh_{t+1}      (dh_{T+1} term: the last state's grad)
    g_t        = dh_t * h_{t-1} * decay_t                 (the gradient of Delta_t A)
    dDelta_t   = sum_n g_t A + x_t sum_n dh_t B_t
    dx_t       = Delta_t sum_n dh_t B_t
    dA         = sum_{b,t} Delta_t g_t
    dB_t       = sum_e dh_t Delta_t x_t
    dC_t       = sum_e dy_t h_t
    dh_0       = decay_1 * dh_1

Memory: the forward keeps x, Delta, A, B, C, h_0 and the state entering every segment of
`segment` positions, (B, T / segment, E, N); never (B, T, E, N). The forward and the backward
hold (B, segment, E, N) work buffers for one segment at a time; the backward recomputes each
segment's states from its saved entry state. Autograd records one node per call, not two per
position.

Padding: a position with Delta = 0 has decay 1 and no input, so the state passes through.
"""

from __future__ import annotations

import torch
from torch import Tensor

SEGMENT = 32  # positions per saved state; (B, SEGMENT, E, N) work buffers


def _segment_terms(x: Tensor, dt: Tensor, A: Tensor, B: Tensor,
                   decay: Tensor, inputs: Tensor) -> tuple[Tensor, Tensor]:
    """One segment's decays exp(Delta A) and inputs Delta x B, each (B, L, E, N), written into
    the first L positions of the work buffers decay and inputs (reused: no fresh pages)."""
    L = x.size(1)
    decay = torch.mul(dt[..., None], A, out=decay[:, :L]).exp_()  # (B, L, E, N)
    inputs = torch.mul((dt * x)[..., None], B[:, :, None, :], out=inputs[:, :L])  # (B, L, E, N)
    return decay, inputs


def _run_states(decay: Tensor, inputs: Tensor, h: Tensor, out: Tensor) -> Tensor:
    """h_t = decay_t * h_{t-1} + input_t for the segment, written into out (B, L, E, N);
    returns the last state."""
    for k in range(decay.size(1)):
        h = torch.addcmul(inputs[:, k], decay[:, k], h, out=out[:, k])
    return h


class SelectiveScan(torch.autograd.Function):
    """See the module docstring; `selective_scan` is its entry point."""

    @staticmethod
    def forward(ctx, x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor,
                h0: Tensor | None, segment: int) -> tuple[Tensor, Tensor]:
        batch, T, E = x.shape
        N = A.size(-1)
        h = x.new_zeros(batch, E, N) if h0 is None else h0
        starts = x.new_empty(batch, -(-T // segment), E, N)  # the state entering each segment
        y = x.new_empty(batch, T, E)
        states, decay_buf, inputs_buf = (x.new_empty(batch, min(segment, T), E, N)
                                         for _ in range(3))  # work buffers, reused
        for i, s in enumerate(range(0, T, segment)):
            part = slice(s, s + segment)
            starts[:, i] = h
            decay, inputs = _segment_terms(x[:, part], dt[:, part], A, B[:, part], decay_buf,
                                           inputs_buf)
            L = decay.size(1)
            h = _run_states(decay, inputs, h, states[:, :L])
            y[:, part] = torch.matmul(states[:, :L], C[:, part, :, None]).squeeze(-1)
        ctx.segment = segment
        ctx.has_h0 = h0 is not None
        ctx.save_for_backward(x, dt, A, B, C, starts)
        ctx.set_materialize_grads(False)
        return y, h.clone()  # h may live in the work buffer

    @staticmethod
    @torch.no_grad()
    def backward(ctx, dy: Tensor | None, dh_last: Tensor | None):
        x, dt, A, B, C, starts = ctx.saved_tensors
        segment = ctx.segment
        batch, T, E = x.shape
        N = A.size(-1)
        dx, ddt, dB, dC = (torch.empty_like(t) for t in (x, dt, B, C))
        dA = x.new_zeros(batch, E, N)  # sum over t of Delta_t g_t, per batch row
        carry = x.new_zeros(batch, E, N) if dh_last is None else dh_last.clone()
        if dy is None:
            dy = x.new_zeros(batch, T, E)
        L0 = min(segment, T)
        states = x.new_empty(batch, L0 + 1, E, N)  # h_{s-1} .. h_{s+L-1}
        dhs, decay_buf, inputs_buf = (x.new_empty(batch, L0, E, N) for _ in range(3))
        for i in reversed(range(starts.size(1))):
            part = slice(i * segment, (i + 1) * segment)
            xp, dtp, Bp, Cp, dyp = x[:, part], dt[:, part], B[:, part], C[:, part], dy[:, part]
            decay, inputs = _segment_terms(xp, dtp, A, Bp, decay_buf, inputs_buf)  # (B, L, E, N)
            L = decay.size(1)
            states[:, 0] = starts[:, i]  # recompute the segment's states
            _run_states(decay, inputs, starts[:, i], states[:, 1:L + 1])
            dC[:, part] = torch.matmul(dyp[:, :, None, :], states[:, 1:L + 1]).squeeze(2)
            dyc, cc = dyp[..., None], Cp[:, :, None, :]  # (B, L, E, 1), (B, L, 1, N)
            for k in reversed(range(L)):  # dh_t = dy_t C_t + decay_{t+1} dh_{t+1}
                torch.addcmul(carry, dyc[:, k], cc[:, k], out=dhs[:, k])
                torch.mul(dhs[:, k], decay[:, k], out=carry)  # its share of dh_{t-1}
            dh = dhs[:, :L]  # (B, L, E, N)
            dBx = torch.matmul(dh, Bp[..., None]).squeeze(-1)  # sum_n dh_t B_t, (B, L, E)
            dB[:, part] = torch.matmul((dtp * xp)[:, :, None, :], dh).squeeze(2)
            g = decay.mul_(states[:, :L]).mul_(dh)  # g_t = dh_t * h_{t-1} * decay_t
            dA.add_(torch.mul(g, dtp[..., None], out=inputs).sum(1))  # inputs: free now
            ddt[:, part] = g.mul_(A).sum(-1) + dBx * xp
            dx[:, part] = dBx * dtp
        dh0 = carry if ctx.has_h0 else None
        return dx, ddt, dA.sum(0), dB, dC, dh0, None


def selective_scan(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor,
                   h0: Tensor | None = None, *, segment: int = SEGMENT) -> tuple[Tensor, Tensor]:
    """x, dt (B, T, E); A (E, N); B, C (B, T, N); h0 (B, E, N) or None -> y (B, T, E), the last
    state h_T (B, E, N). Runs in the inputs' dtype (give it >= float32) with autocast off."""
    if x.size(1):
        with torch.autocast(x.device.type, enabled=False):
            return SelectiveScan.apply(x, dt, A, B, C, h0, segment)
    h = x.new_zeros(x.size(0), *A.shape) if h0 is None else h0
    return x.new_zeros(x.shape), h
