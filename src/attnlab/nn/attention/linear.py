"""Linear attention (Katharopoulos, Vyas, Pappas and Fleuret, 2020, "Transformers are RNNs:
Fast Autoregressive Transformers with Linear Attention").

The similarity exp(q . k) is replaced by a kernel phi(q) . phi(k) with phi(x) = elu(x) + 1, so
attention factorises: out_i = phi(q_i)^T (sum_j phi(k_j) v_j^T) / phi(q_i)^T (sum_j phi(k_j)).
The two sums are formed once (non-causal) or as prefix sums (causal: the RNN view, state
S_t = S_{t-1} + phi(k_t) v_t^T), in time linear in the length. The causal sums run chunkwise:
exact products inside chunks of C positions, one state per chunk carried across chunks.
`kernel_attention` is shared with Performer (FAVOR+), whose features carry a per-key scale.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from attnlab.nn import functional as AF
from attnlab.nn.attention.base import ATTENTION, check_positive
from attnlab.nn.attention.efficient import EfficientAttention

NEG = -1e30  # log-scale of a masked key: exp(NEG - finite) underflows to 0, never NaN


def _safe_divide(num: Tensor, den: Tensor) -> Tensor:
    """num / den, and 0 where den == 0 (a query with no key), with finite gradients."""
    return num / torch.where(den > 0, den, torch.ones_like(den))


def _rescaled_scan(m: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
    """Inclusive prefix sums of exp(m_c) s_c over chunks c, kept as (log-scale, rescaled sum).

    m (B, H, N), s (B, H, N, F, E). A Hillis-Steele scan: log2(N) vectorised steps, each adding
    the partial sum `shift` chunks back, rescaled to the larger log-scale so nothing overflows
    and no chunk's scale reaches an earlier prefix (strictly causal numerics).
    """
    shift = 1
    while shift < m.size(-1):
        m_prev = F.pad(m[..., :-shift], (shift, 0), value=NEG)  # (B, H, N)
        s_prev = F.pad(s[:, :, :-shift], (0, 0, 0, 0, shift, 0))  # (B, H, N, F, E)
        m_new = torch.maximum(m, m_prev)
        s_prev = s_prev * (m_prev - m_new).exp()[..., None, None]
        s = s * (m - m_new).exp()[..., None, None] + s_prev  # (B, H, N, F, E)
        m, shift = m_new, 2 * shift
    return m, s


def _causal_sums(fq: Tensor, fk: Tensor, v1: Tensor, ls: Tensor | None, chunk: int) -> Tensor:
    """sum over keys j <= i + S - T (lower-right) of (fq_i . fk_j) exp(ls_j) v1_j, chunkwise."""
    B, H, T, _ = fq.shape
    if fk.size(2) < T:  # the first T - S queries see no key: zero keys on the left
        gap = T - fk.size(2)
        fk, v1 = F.pad(fk, (0, 0, gap, 0)), F.pad(v1, (0, 0, gap, 0))  # (B, H, T, *)
        ls = None if ls is None else F.pad(ls, (gap, 0), value=NEG)  # (B, H, T)
    P = fk.size(2) - T  # keys every query sees (a KV cache's past)
    pad = -T % chunk
    fq = F.pad(fq, (0, 0, 0, pad)).unflatten(2, (-1, chunk))  # (B, H, N, C, F)
    fc = F.pad(fk[:, :, P:], (0, 0, 0, pad)).unflatten(2, (-1, chunk))  # (B, H, N, C, F)
    vc = F.pad(v1[:, :, P:], (0, 0, 0, pad)).unflatten(2, (-1, chunk))  # (B, H, N, C, E)
    scores = fq @ fc.transpose(-1, -2)  # (B, H, N, C, C)
    future = torch.ones(chunk, chunk, dtype=torch.bool, device=fq.device).triu(1)
    if ls is None:
        past = fk[:, :, :P].transpose(-1, -2) @ v1[:, :, :P]  # (B, H, F, E)
        local = fc.transpose(-1, -2) @ vc  # (B, H, N, F, E)
        states = past[:, :, None] + local.cumsum(2) - local  # (B, H, N, F, E) before chunk
        inter = fq @ states  # (B, H, N, C, E)
        intra = scores.masked_fill(future, 0.0) @ vc  # (B, H, N, C, E)
        return (inter + intra).flatten(2, 3)[:, :, :T]  # (B, H, T, E)
    ls_past = ls[..., :P]  # (B, H, P)
    m0 = ls_past.amax(-1) if P else ls.new_full((B, H), NEG)  # (B, H)
    past = (fk[:, :, :P] * (ls_past - m0[..., None]).exp()[..., None]).transpose(-1, -2)
    past = past @ v1[:, :, :P]  # (B, H, F, E)
    lc = F.pad(ls[..., P:], (0, pad), value=NEG).unflatten(-1, (-1, chunk))  # (B, H, N, C)
    mu = lc.amax(-1)  # (B, H, N)
    local = (fc * (lc - mu[..., None]).exp()[..., None]).transpose(-1, -2) @ vc  # (B, H, N, F, E)
    m_inc, s_inc = _rescaled_scan(mu, local)
    m_ex = F.pad(m_inc[..., :-1], (1, 0), value=NEG)  # (B, H, N) scale before each chunk
    s_ex = F.pad(s_inc[:, :, :-1], (0, 0, 0, 0, 1, 0))  # (B, H, N, F, E)
    m_c = torch.maximum(m_ex, m0[..., None])  # (B, H, N)
    states = s_ex * (m_ex - m_c).exp()[..., None, None]
    states = states + past[:, :, None] * (m0[..., None] - m_c).exp()[..., None, None]
    m_q = torch.maximum(m_c[..., None], lc.cummax(-1).values)  # (B, H, N, C) per-query scale
    inter = (fq @ states) * (m_c[..., None] - m_q).exp()[..., None]  # (B, H, N, C, E)
    expo = (lc[..., None, :] - m_q[..., :, None]).masked_fill(future, float("-inf"))
    intra = (scores * expo.exp()) @ vc  # (B, H, N, C, E)
    return (inter + intra).flatten(2, 3)[:, :, :T]  # (B, H, T, E)


def kernel_attention(
    fq: Tensor,
    fk: Tensor,
    v: Tensor,
    *,
    causal: bool,
    key_log_scale: Tensor | None = None,
    chunk_size: int = 64,
) -> Tensor:
    """sum_j w_ij v_j with w_ij proportional to (fq_i . fk_j) exp(key_log_scale_j), sum_j w_ij = 1.

    fq (B, H, T, F) and fk (B, H, S, F): non-negative features, zero rows for masked keys;
    key_log_scale (B, H, S): a per-key log factor kept apart from the features so they cannot
    overflow (NEG for masked keys), or None. causal: lower-right aligned. A query with no key
    gets 0. Returns (B, H, T, Dh) in time O((T + S) F Dh + T C F), never a T x S matrix.
    """
    v1 = F.pad(v, (0, 1), value=1.0)  # (B, H, S, Dh + 1): the last column sums the normaliser
    if causal:
        sums = _causal_sums(fq, fk, v1, key_log_scale, chunk_size)  # (B, H, T, Dh + 1)
    else:
        if key_log_scale is not None:  # one scale per (batch, head) cancels in the ratio
            top = key_log_scale.amax(-1, keepdim=True)  # (B, H, 1)
            fk = fk * (key_log_scale - top).exp()[..., None]  # (B, H, S, F)
        sums = fq @ (fk.transpose(-1, -2) @ v1)  # (B, H, T, Dh + 1)
    return _safe_divide(sums[..., :-1], sums[..., -1:])  # (B, H, T, Dh)


def kernel_weights(
    fq: Tensor, fk: Tensor, key_log_scale: Tensor | None, causal: bool
) -> Tensor:
    """The (B, H, T, S) weights kernel_attention applies, materialised for inspection."""
    T, S = fq.size(2), fk.size(2)
    scores = fq @ fk.transpose(-1, -2)  # (B, H, T, S)
    allowed = AF.causal_mask(T, S, fq.device) if causal else None  # (T, S)
    if key_log_scale is not None:  # rescale each row to its largest visible key
        expo = key_log_scale[..., None, :].expand_as(scores)  # (B, H, T, S)
        if allowed is not None:
            expo = expo.masked_fill(~allowed, NEG)
        scores = scores * (expo - expo.amax(-1, keepdim=True)).exp()
    if allowed is not None:
        scores = scores.masked_fill(~allowed, 0.0)
    return _safe_divide(scores, scores.sum(-1, keepdim=True))  # (B, H, T, S)


@ATTENTION.register("linear")
class LinearAttention(EfficientAttention):
    """Linear attention with phi(x) = elu(x) + 1: a different kernel, not a softmax estimate.

    Time O((T + S) Dh^2) non-causal, O(T Dh^2 + T C Dh) causal; memory O(T C + (T / C) Dh^2)
    per head beyond the inputs (C = chunk_size); the KV cache recomputes from the cached keys.

    Args:
        chunk_size: causal chunk length C: exact products inside a chunk, carried states
            across chunks. Changes speed and memory only, never the result.
        head_dim, d_context, bias: as in EfficientAttention.
    """

    supports_causal: ClassVar[bool] = True
    supports_mask: ClassVar[bool] = True
    supports_cross: ClassVar[bool] = True
    supports_cache: ClassVar[bool] = True
    permutation_equivariant: ClassVar[bool] = True
    budget_knob: ClassVar[str | None] = None
    complexity: ClassVar[str] = "time O((T + S) Dh^2 + T C Dh), memory O(T C + (T / C) Dh^2)"

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        *,
        chunk_size: int = 64,
        head_dim: int | None = None,
        d_context: int | None = None,
        bias: bool = True,
    ) -> None:
        super().__init__(d_model, n_heads, head_dim=head_dim, d_context=d_context, bias=bias)
        check_positive("chunk_size", chunk_size)
        self.chunk_size = chunk_size

    @staticmethod
    def feature_map(x: Tensor) -> Tensor:
        """phi(x) = elu(x) + 1: positive, so every weight is non-negative."""
        return F.elu(x) + 1.0

    def attend(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        *,
        key_keep: Tensor | None,
        mask: Tensor | None,
        causal: bool,
        need_weights: bool,
    ) -> tuple[Tensor, Tensor | None]:
        work = torch.promote_types(q.dtype, torch.float32)
        fq = self.feature_map(q.to(work))  # (B, H, T, Dh)
        fk = self.feature_map(k.to(work))  # (B, H, S, Dh)
        if key_keep is not None:
            fk = fk.masked_fill(~key_keep[:, None, :, None], 0.0)  # masked keys weigh 0
        out = kernel_attention(fq, fk, v.to(work), causal=causal, chunk_size=self.chunk_size)
        weights = kernel_weights(fq, fk, None, causal).to(q.dtype) if need_weights else None
        return out.to(q.dtype), weights

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, chunk_size={self.chunk_size}"
