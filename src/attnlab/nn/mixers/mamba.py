"""Mamba's selective state-space mixer (Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling
with Selective State Spaces", sec. 3 and Algorithm 2), with the parameter names and shapes of
Hugging Face's MambaMixer so weights map one to one.

Per position t, with E = expand * d_model channels and N = d_state states per channel:

    x_t, z_t   = in_proj(u_t)                                  (E each)
    x_t        = SiLU(causal depthwise conv1d(x)_t)            (kernel d_conv)
    (r_t, B_t, C_t) = x_proj(x_t)                              (dt_rank, N, N)
    Delta_t    = softplus(dt_proj(r_t))                        (E)   selection
    A          = -exp(A_log)                                   (E, N)
    h_t        = exp(Delta_t A) * h_{t-1} + (Delta_t B_t) x_t  (E, N) discretised: A by
                                                               eq. 4's zero-order hold, B by
                                                               its first-order Delta B (as
                                                               the reference code and HF)
    y_t        = (h_t C_t + D * x_t) * SiLU(z_t)
    out_t      = out_proj(y_t)

Forms of the scan (the rest is shared):

- "recurrent" (the default): h_t step by step (Algorithm 2's scan). A multi-token input runs
  `selective_scan.selective_scan`, an autograd.Function keeping the state every 32 positions
  and recomputing the rest in its backward (sec. 3.3.2's recomputation, on a CPU); a one-token
  step with a cache is the plain autograd loop `_recurrent` (generation).
- "chunkwise": positions in chunks of `chunk_size`; inside a chunk the states come from the
  pairwise decays exp(S_t - S_s), s <= t, S the running sum of Delta A (every factor <= 1,
  never exp(S_t) * exp(-S_s), which overflows), all chunks at once; the state entering each
  chunk is carried by a short loop over the chunks. T / chunk_size sequential steps instead
  of T, for L (L + 1) / 2 decays per chunk of L instead of L.

Which is faster depends on the machine. Training forward + backward of one mixer (d_model 256,
T 256, batch 8, one CPU thread, CPU time): recurrent 0.66 s; chunkwise 1.9 s at chunk 2, 2.2 s
at 4, 3.0 s at 8, 5.0 s at 16 (the pairwise decays cost L / 2 times the recurrent work, which
on a CPU outweighs the fewer steps). Hence the recurrent default and chunk_size 2, the fastest
chunk there; on an accelerator, where each step is a kernel launch, measure larger chunks.
(Those figures are of the autograd loop; selective_scan makes the recurrent form faster still:
a mamba-tiny-shaped training step, d_model 117, 8 layers, batch 16, T 128, 2 threads, took
0.75-0.80 s and 952 MiB peak with the loop, 0.51 s and 239 MiB with it.)

State (a RecurrentState): "conv", the last d_conv - 1 conv inputs (B, E, d_conv - 1), and
"ssm", h (B, E, N). Padded positions (mask False) contribute nothing: the mixer input and the
conv input are zeroed there (as Hugging Face does) and Delta is zero, so the SSM state passes
through unchanged; a left-padded row equals the unpadded row in every form.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.errors import ConfigError
from attnlab.nn.attention.base import AttentionOutput
from attnlab.nn.cache import RecurrentState
from attnlab.nn.mixers.base import MIXER, SequenceMixer, positive_int, zero_padding
from attnlab.nn.mixers.selective_scan import selective_scan

# Positions per scan call: the chunkwise scan and the one-token loop build (B, T, E, N) tensors
# (decays, inputs, states), which for a 32k-token prefill at d_model 256 would be ~1 GB each;
# blocks bound them (selective_scan keeps (B, T / 32, E, N) states either way).
SCAN_BLOCK = 512


def resolve_dt_rank(dt_rank: int | str, d_model: int) -> int:
    """dt_rank "auto" = ceil(d_model / 16) (the paper's and Hugging Face's default)."""
    if dt_rank == "auto":
        return math.ceil(d_model / 16)
    return positive_int("MambaMixer", "dt_rank", dt_rank)


@MIXER.register("mamba")
class MambaMixer(SequenceMixer):
    """The selective SSM block of one Mamba layer (see the module docstring).

    Args:
        d_model: input and output width.
        d_state: N, states per channel (16).
        d_conv: kernel of the causal depthwise convolution (4).
        expand: E = expand * d_model inner channels (2).
        dt_rank: rank of Delta's projection; "auto" = ceil(d_model / 16).
        use_bias: biases on in_proj and out_proj (False); conv_bias: on the convolution (True).
        chunk_size: positions per chunk of the chunkwise scan (2: the fastest on a CPU).
        dt_min, dt_max, dt_init_floor: Delta's initial range (log-uniform, floored).
        form: "recurrent" (default) or "chunkwise".
    """

    forms = ("recurrent", "chunkwise")

    def __init__(self, d_model: int, *, d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 dt_rank: int | str = "auto", use_bias: bool = False, conv_bias: bool = True,
                 chunk_size: int = 2, dt_min: float = 0.001, dt_max: float = 0.1,
                 dt_init_floor: float = 1e-4, form: str | None = None) -> None:
        super().__init__(d_model, form)
        self.d_state = positive_int("MambaMixer", "d_state", d_state)
        self.d_conv = positive_int("MambaMixer", "d_conv", d_conv)
        self.d_inner = positive_int("MambaMixer", "expand", expand) * d_model
        self.dt_rank = resolve_dt_rank(dt_rank, d_model)
        self.chunk_size = positive_int("MambaMixer", "chunk_size", chunk_size)
        if not 0 < dt_min <= dt_max:
            raise ConfigError(f"MambaMixer: dt_min and dt_max must satisfy 0 < dt_min <= dt_max, "
                             f"got dt_min={dt_min!r}, dt_max={dt_max!r}")
        if not dt_init_floor >= 0:
            raise ConfigError(f"MambaMixer: dt_init_floor must be >= 0, got {dt_init_floor!r}")
        self.dt_range = (dt_min, dt_max, dt_init_floor)
        E, N, R = self.d_inner, self.d_state, self.dt_rank
        self.in_proj = nn.Linear(d_model, 2 * E, bias=use_bias)
        self.conv1d = nn.Conv1d(E, E, d_conv, groups=E, bias=conv_bias)  # weight (E, 1, d_conv)
        self.x_proj = nn.Linear(E, R + 2 * N, bias=False)
        self.dt_proj = nn.Linear(R, E, bias=True)
        self.A_log = nn.Parameter(torch.empty(E, N))
        self.D = nn.Parameter(torch.empty(E))
        self.out_proj = nn.Linear(E, d_model, bias=use_bias)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The paper's initialisation (as mamba_ssm and Hugging Face): A = -(1 .. N) per channel
        (S4D-real), D = 1, Delta's bias the inverse softplus of a log-uniform draw in
        [dt_min, dt_max] (floored at dt_init_floor), dt_proj's weight uniform in
        +-dt_rank^-0.5; the projections and the convolution PyTorch's default, zero biases."""
        for module in (self.in_proj, self.x_proj, self.out_proj, self.conv1d):
            module.reset_parameters()
        for module in (self.in_proj, self.out_proj):
            if module.bias is not None:
                module.bias.zero_()
        if self.conv1d.bias is not None:
            self.conv1d.bias.zero_()
        dt_min, dt_max, floor = self.dt_range
        std = self.dt_rank ** -0.5
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min))
                       + math.log(dt_min)).clamp_min(floor)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus^-1(dt)
        self.A_log.copy_(torch.log(torch.arange(1, self.d_state + 1, dtype=torch.float32))
                         .expand(self.d_inner, -1))
        self.D.fill_(1.0)

    def forward(self, x: Tensor, context: Tensor | None = None, *, mask: Tensor | None = None,
                causal: bool = True, cache: RecurrentState | None = None,
                need_weights: bool = False, bias: Tensor | None = None,
                position_ids: Tensor | None = None) -> AttentionOutput:
        """x (B, T, D) -> AttentionOutput((B, T, D), None, cache); position_ids are unused."""
        keep = self.check_call(x, context, mask, causal, cache, need_weights, bias)  # (B, T)
        T = x.size(1)
        xs, z = self.in_proj(zero_padding(x, keep)).chunk(2, dim=-1)  # (B, T, E) each
        window = None if cache is None else cache.get("conv")
        xs, window = self._conv(zero_padding(xs, keep), window)  # (B, T, E), (B, E, K - 1)
        xs = zero_padding(F.silu(xs), keep)
        r, B, C = self.x_proj(xs).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = zero_padding(F.softplus(self.dt_proj(r)), keep)  # (B, T, E); 0 = no step
        dtype = torch.promote_types(xs.dtype, torch.float32)  # the scan runs in >= float32
        A = -torch.exp(self.A_log.to(dtype))  # (E, N)
        h = None if cache is None else cache.get("ssm")  # (B, E, N)
        if T == 1:  # a generation step: the autograd loop (one position, nothing to save)
            scan = self._recurrent
        else:
            scan = self._lean_scan if self.form == "recurrent" else self._chunkwise
        pieces = []
        for start in range(0, T, SCAN_BLOCK):  # the state carries across blocks
            part = slice(start, start + SCAN_BLOCK)
            y, h = scan(xs[:, part].to(dtype), dt[:, part].to(dtype), A, B[:, part].to(dtype),
                        C[:, part].to(dtype), h)  # (B, T_block, E)
            pieces.append(y)
        y = torch.cat(pieces, 1) if len(pieces) > 1 else pieces[0]  # (B, T, E)
        y = (y + xs.to(dtype) * self.D.to(dtype)) * F.silu(z.to(dtype))
        out = self.out_proj(y.to(xs.dtype))  # (B, T, D)
        if cache is not None:
            cache.set("conv", window)
            cache.set("ssm", h)
            cache.advance(T)
        return self.result(out, cache)

    def _conv(self, xs: Tensor, window: Tensor | None) -> tuple[Tensor, Tensor]:
        """Causal depthwise convolution of xs (B, T, E) after the previous window (B, E, K - 1)
        (zeros at the start) -> the outputs (B, T, E) and the new window."""
        xs = xs.transpose(1, 2)  # (B, E, T)
        if window is None:
            window = xs.new_zeros(xs.size(0), self.d_inner, self.d_conv - 1)
        full = torch.cat([window.to(xs.dtype), xs], dim=-1)  # (B, E, K - 1 + T)
        out = self.conv1d(full)  # (B, E, T)
        return out.transpose(1, 2), full[:, :, full.size(-1) - (self.d_conv - 1):]

    # the recurrent form of a multi-token input: selective_scan.py's autograd.Function (states
    # kept every SEGMENT positions and recomputed in the backward)
    _lean_scan = staticmethod(selective_scan)

    @staticmethod
    def _recurrent(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor,
                   h: Tensor | None) -> tuple[Tensor, Tensor]:
        """h_t = exp(Delta_t A) h_{t-1} + Delta_t B_t x_t, one position at a time.
        x, dt (B, T, E); A (E, N); B, C (B, T, N); h (B, E, N) or None -> y (B, T, E), h."""
        decay = torch.exp(dt[..., None] * A)  # (B, T, E, N)
        inputs = (dt * x)[..., None] * B[:, :, None, :]  # (B, T, E, N)
        if h is None:
            h = x.new_zeros(x.size(0), *A.shape)  # (B, E, N)
        states = []
        # unbind, not decay[:, t]: the backward of T slices would write T full-size gradients
        for decay_t, input_t in zip(decay.unbind(1), inputs.unbind(1), strict=True):
            h = decay_t * h + input_t  # (B, E, N)
            states.append(h)
        y = torch.einsum("bten,btn->bte", torch.stack(states, 1), C)  # (B, T, E)
        return y, h

    def _chunkwise(self, x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor,
                   h: Tensor | None) -> tuple[Tensor, Tensor]:
        """The same scan, chunk by chunk (see the module docstring); same shapes as
        `_recurrent`. Positions past T (padding up to whole chunks) have Delta = 0: they neither
        decay nor feed the state."""
        batch, T, E = x.shape
        L = min(self.chunk_size, T)
        pad = -T % L
        if pad:
            x, dt, B, C = (F.pad(t, (0, 0, 0, pad)) for t in (x, dt, B, C))
        n = (T + pad) // L
        N = A.size(-1)
        S = (dt[..., None] * A).view(batch, n, L, E, N).cumsum(2)  # (B, n, L, E, N) <= 0
        inputs = ((dt * x)[..., None] * B[:, :, None, :]).view(batch, n, L, E, N)
        t, s = torch.tril_indices(L, L, device=x.device)  # the P = L (L + 1) / 2 pairs s <= t
        decay = torch.exp(S[:, :, t] - S[:, :, s])  # (B, n, P, E, N), each <= 1
        states = S.new_zeros(S.shape).index_add(2, t, decay * inputs[:, :, s])  # (B, n, L, E, N)
        chunk_decay = torch.exp(S[:, :, -1])  # (B, n, E, N)
        if h is None:
            h = x.new_zeros(batch, E, N)
        starts = []
        for decay_c, last_c in zip(chunk_decay.unbind(1), states[:, :, -1].unbind(1),
                                   strict=True):  # the state entering each chunk
            starts.append(h)
            h = decay_c * h + last_c  # (B, E, N)
        states = states + torch.exp(S) * torch.stack(starts, 1)[:, :, None]  # (B, n, L, E, N)
        y = torch.einsum("bclen,bcln->bcle", states, C.view(batch, n, L, N))  # (B, n, L, E)
        return y.reshape(batch, n * L, E)[:, :T], h
