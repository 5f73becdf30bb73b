"""Multi-scale retention (Sun et al. 2023, "Retentive Network: A Successor to Transformer for
Large Language Models", sec. 2): RetNet's replacement for attention, in its three forms.

Per head, with q_n, k_n rotated by their positions (the paper's Theta, e^{i n theta}: RoFormer's
rotation, `nn/position/rope.py`, so q_n . k_m depends on n - m only) and k scaled by d^-0.5:

    parallel (eq. 5):   Retention(X) = (Q K^T * D) V,      D_nm = gamma^(n-m) if n >= m, else 0
    recurrent (eq. 6):  S_n = gamma S_{n-1} + k_n^T v_n,   o_n = q_n S_n
    chunkwise (eq. 7):  R_i = K_[i]^T (V_[i] * zeta) + gamma^B R_{i-1}
                        Retention(X_[i]) = (Q_[i] K_[i]^T * D) V_[i] + (Q_[i] R_{i-1}) * xi

with the multi-scale decays gamma_h = 1 - 2^(-5-h) of head h = 0 .. H-1 (eq. 8), value heads
twice as wide as query/key heads, GroupNorm per head, and Y = (swish(X W_G) * GroupNorm(heads))
W_O: 8 d^2 parameters (W_Q, W_K d x d; W_V, W_G d x 2d; W_O 2d x d), no biases, as the paper
allots them so that a block with a 2d-wide feed-forward has a Transformer block's 12 d^2.

Normalisations. The paper (sec. 2.2, "Retention Score Normalization") divides each row of D by
sqrt(sum_m D_nm) and the scores by max(|sum_m (QK^T * D)_nm|, 1); its reference code applies
them in the parallel form but not in the same way in the recurrent one, so the forms disagree.
Both are a positive scale per head and position, and GroupNorm normalises each head at each
position: GroupNorm(c y) = GroupNorm(y) up to its eps. We keep neither, so the three forms
compute one function exactly (float64: 1e-6 in the tests); the paper added them for fp16 range,
so the un-normalised sums (up to 1 / (1 - gamma) = 2^(5+h) times a single term) are
accumulated in at least float32 with autocast off. The d^-0.5 scale and GroupNorm are kept.

Padding: a padded position's key contributes nothing and decay does not advance over it (the
decay between n and m is gamma^(real positions in (m, n])), so a left-padded row gives the
unpadded row's outputs in every form. State: S (B, H, Dk, Dv) in a RecurrentState.

Default form and chunk: chunkwise, 64. A training forward + backward at d_model 256, batch 8,
one CPU thread (4 heads; 8 heads alike) took 96 ms at T = 256 (parallel 111 ms, chunks of
16 / 128: 151 / 102 ms) and 499 ms at T = 1024 (parallel 874 ms, chunks of 16 / 128 / 256:
549 / 695 / 662 ms); the recurrent form 5-8x longer.
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
from attnlab.nn.position.rope import RotaryEmbedding


def decays(n_heads: int, dtype: torch.dtype = torch.float64,
           device: torch.device | None = None) -> Tensor:
    """(H,) the paper's gamma_h = 1 - 2^(-5-h), h = 0 .. H-1."""
    return 1 - 2.0 ** (-5 - torch.arange(n_heads, dtype=dtype, device=device))


def _counts(keep: Tensor | None, length: int, like: Tensor) -> Tensor:
    """(B or 1, T) real positions up to and including each position (decay exponents)."""
    if keep is None:
        return torch.arange(1, length + 1, dtype=like.dtype, device=like.device)[None]
    return keep.to(like.dtype).cumsum(-1)


def _decay_matrix(tau: Tensor, log_gamma: Tensor) -> Tensor:
    """(..., T) counts, (H,) log decays -> (..., H, T, T) gamma^(tau_n - tau_m) for m <= n,
    0 above the diagonal (filled before exp, so nothing overflows)."""
    diff = tau[..., :, None] - tau[..., None, :]  # (..., T, T)
    log_d = diff.unsqueeze(-3) * log_gamma[:, None, None]  # (..., H, T, T)
    T = tau.size(-1)
    future = torch.ones(T, T, dtype=torch.bool, device=tau.device).triu(1)
    return log_d.masked_fill(future, -math.inf).exp()


def parallel_retention(q: Tensor, k: Tensor, v: Tensor, log_gamma: Tensor,
                       keep: Tensor | None, state: Tensor | None = None,
                       need_state: bool = False) -> tuple[Tensor, Tensor | None]:
    """(Q K^T * D) V over the whole sequence, plus what a prior state S_0 gives (q_n
    gamma^tau_n S_0). q, k (B, H, T, Dk), v (B, H, T, Dv), log_gamma (H,), keep (B, T) or None,
    state (B, H, Dk, Dv) or None -> o (B, H, T, Dv), the state after T positions (need_state)."""
    T = q.size(2)
    tau = _counts(keep, T, q)  # (B', T)
    if keep is not None:
        k = k * keep[:, None, :, None].to(k.dtype)  # padded keys add nothing
    d = _decay_matrix(tau, log_gamma)  # (B', H, T, T)
    o = (q @ k.transpose(-1, -2) * d) @ v  # (B, H, T, Dv)
    lg = log_gamma[:, None, None]  # (H, 1, 1)
    if state is not None:
        o = o + (q * (tau[:, None, :, None] * lg).exp()) @ state
    if not need_state:
        return o, None
    weight = ((tau[:, -1:] - tau)[:, None, :, None] * lg).exp()  # (B', H, T, 1)
    new_state = (k * weight).transpose(-1, -2) @ v  # (B, H, Dk, Dv)
    if state is not None:
        new_state = new_state + (tau[:, -1, None] * log_gamma).exp()[..., None, None] * state
    return o, new_state


def chunkwise_retention(q: Tensor, k: Tensor, v: Tensor, log_gamma: Tensor,
                        keep: Tensor | None, state: Tensor | None = None,
                        chunk_size: int = 64) -> tuple[Tensor, Tensor]:
    """Eq. 7: the parallel form inside chunks of `chunk_size`, a state R carried across them.
    The last chunk is filled with padding (which neither contributes nor decays). Shapes as
    `parallel_retention`; returns o and the state after the T positions."""
    B, H, T, Dk = q.shape
    Dv, C = v.size(-1), chunk_size
    N = -(-T // C)
    if keep is None:
        keep = torch.ones(1, T, dtype=torch.bool, device=q.device)
    if N * C != T:
        q, k, v = (F.pad(t, (0, 0, 0, N * C - T)) for t in (q, k, v))
        keep = F.pad(keep, (0, N * C - T), value=False)
    keep_c = keep.view(keep.size(0), N, C)  # (B', N, C)
    qc, kc, vc = (t.reshape(B, H, N, C, t.size(-1)) for t in (q, k, v))  # (B, H, N, C, *)
    kc = kc * keep_c[:, None, :, :, None].to(kc.dtype)
    tau = keep_c.to(q.dtype).cumsum(-1)  # (B', N, C) real positions so far in the chunk
    d = _decay_matrix(tau, log_gamma).transpose(1, 2)  # (B', H, N, C, C)
    o = (qc @ kc.transpose(-1, -2) * d) @ vc  # (B, H, N, C, Dv) within chunks
    lg = log_gamma[:, None, None, None]  # (H, 1, 1, 1)
    zeta = ((tau[..., -1:] - tau)[:, None, :, :, None] * lg).exp()  # (B', H, N, C, 1)
    summary = (kc * zeta).transpose(-1, -2) @ vc  # (B, H, N, Dk, Dv) each chunk's own state
    chunk_decay = (tau[:, None, :, -1] * log_gamma[:, None]).exp()  # (B', H, N) gamma^B
    r = q.new_zeros(B, H, Dk, Dv) if state is None else state
    before = []  # R_{i-1} for each chunk i
    # unbind once: indexing inside the loop would cost a full-size gradient per chunk
    for decay, own in zip(chunk_decay[..., None, None].unbind(2), summary.unbind(2),
                          strict=True):
        before.append(r)
        r = decay * r + own
    xi = (tau[:, None, :, :, None] * lg).exp()  # (B', H, N, C, 1)
    o = o + (qc * xi) @ torch.stack(before, dim=2)  # (B, H, N, C, Dv) across chunks
    return o.reshape(B, H, N * C, Dv)[:, :, :T], r


def recurrent_retention(q: Tensor, k: Tensor, v: Tensor, log_gamma: Tensor,
                        keep: Tensor | None, state: Tensor | None = None
                        ) -> tuple[Tensor, Tensor]:
    """Eq. 6, one position at a time: S_n = gamma S_{n-1} + k_n^T v_n, o_n = q_n S_n (a padded
    position leaves S as it is). Shapes as `parallel_retention`."""
    B, H, T, Dk = q.shape
    s = q.new_zeros(B, H, Dk, v.size(-1)) if state is None else state  # (B, H, Dk, Dv)
    gamma = log_gamma.exp()[:, None, None]  # (H, 1, 1)
    reals = [None] * T if keep is None else keep[:, :, None, None, None].unbind(1)
    outputs = []  # unbound once: indexing per step would cost a full-size gradient per step
    for q_t, k_t, v_t, real in zip(q.unbind(2), k.unbind(2), v.unbind(2), reals, strict=True):
        kv = k_t[..., :, None] * v_t[..., None, :]  # (B, H, Dk, Dv)
        s = gamma * s + kv if real is None else torch.where(real, gamma * s + kv, s)
        outputs.append((q_t[..., None, :] @ s)[..., 0, :])  # (B, H, Dv)
    return torch.stack(outputs, dim=2), s


@MIXER.register("retention")
class MultiScaleRetention(SequenceMixer):
    """RetNet's multi-scale retention (D -> D). Knobs: n_heads (dividing d_model, with even
    query/key heads for the rotation), chunk_size (the chunkwise form's chunk), eps
    (GroupNorm's)."""

    forms = ("chunkwise", "parallel", "recurrent")

    def __init__(self, d_model: int, n_heads: int = 4, chunk_size: int = 64, *,
                 eps: float = 1e-5, form: str | None = None) -> None:
        super().__init__(d_model, form)
        name = type(self).__name__
        positive_int(name, "n_heads", n_heads)
        positive_int(name, "chunk_size", chunk_size)
        if d_model % n_heads:
            raise ConfigError(f"{name}: n_heads ({n_heads}) must divide d_model ({d_model})")
        if (d_model // n_heads) % 2:
            raise ConfigError(f"{name}: the query/key head width d_model / n_heads = "
                              f"{d_model} / {n_heads} must be even (rotation pairs)")
        self.n_heads, self.chunk_size, self.eps = n_heads, chunk_size, eps
        self.head_dim = d_model // n_heads  # Dk; value heads are 2 Dk wide
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, 2 * d_model, bias=False)
        self.g_proj = nn.Linear(d_model, 2 * d_model, bias=False)
        self.out_proj = nn.Linear(2 * d_model, d_model, bias=False)
        self.rotary = RotaryEmbedding(d_model=d_model, n_heads=n_heads, max_seq_len=1)

    def forward(self, x: Tensor, context: Tensor | None = None, *, mask: Tensor | None = None,
                causal: bool = True, cache: RecurrentState | None = None,
                need_weights: bool = False, bias: Tensor | None = None,
                position_ids: Tensor | None = None) -> AttentionOutput:
        keep = self.check_call(x, context, mask, causal, cache, need_weights, bias)
        B, T, _ = x.shape
        H, Dk = self.n_heads, self.head_dim
        if position_ids is None:
            past = 0 if cache is None else cache.length
            position_ids = torch.arange(past, past + T, device=x.device)
        # The sums are not normalised (module docstring): at least float32, autocast off.
        dtype = torch.promote_types(x.dtype, torch.float32)
        q = self.q_proj(x).to(dtype).view(B, T, H, Dk).transpose(1, 2)  # (B, H, T, Dk)
        k = self.k_proj(x).to(dtype).view(B, T, H, Dk).transpose(1, 2)  # (B, H, T, Dk)
        v = self.v_proj(x).to(dtype).view(B, T, H, 2 * Dk).transpose(1, 2)  # (B, H, T, Dv)
        with torch.autocast(x.device.type, enabled=False):
            q = self.rotary(q, position_ids)
            k = self.rotary(k, position_ids) * Dk**-0.5
            log_gamma = torch.log(decays(H, torch.float64, x.device)).to(dtype)  # (H,)
            state = None if cache is None else cache.get("S")
            form = "recurrent" if cache is not None and T == 1 else self.form
            if form == "parallel":
                o, state = parallel_retention(q, k, v, log_gamma, keep, state, cache is not None)
            elif form == "chunkwise":
                o, state = chunkwise_retention(q, k, v, log_gamma, keep, state, self.chunk_size)
            else:
                o, state = recurrent_retention(q, k, v, log_gamma, keep, state)
            # GroupNorm with one group per head, at each position (no affine, as the paper's
            # code): a layer norm over each head's Dv channels
            o = F.layer_norm(o.transpose(1, 2), (2 * Dk,), eps=self.eps)  # (B, T, H, Dv)
        if cache is not None:
            cache.set("S", state)
            cache.advance(T)
        y = F.silu(self.g_proj(x)) * o.reshape(B, T, 2 * self.d_model).to(x.dtype)
        return self.result(zero_padding(self.out_proj(y), keep), cache)  # (B, T, D)

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, n_heads={self.n_heads}, chunk_size={self.chunk_size}, "
                f"form={self.form!r}")
