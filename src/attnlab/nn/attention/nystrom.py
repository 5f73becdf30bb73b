"""Nystromformer attention (Xiong, Zeng, Chakraborty, Tan, Fung, Li and Singh, 2021,
"Nystromformer: A Nystrom-Based Algorithm for Approximating Self-Attention").

The T x S softmax matrix is approximated by the Nystrom method on m landmarks, the means of m
contiguous segments of the queries (Q~) and of the keys (K~):
softmax(Q K~^T) pinv(softmax(Q~ K~^T)) softmax(Q~ K^T) V, all scores scaled by 1 / sqrt(Dh).
The m x m pseudo-inverse comes from an iterative Moore-Penrose scheme (matrix products only),
and the product is taken right to left, so nothing of size T x S is ever formed.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from attnlab.nn import functional as AF
from attnlab.nn.attention.base import ATTENTION, check_positive
from attnlab.nn.attention.efficient import EfficientAttention


def segment_means(x: Tensor, n_segments: int, keep: Tensor | None) -> tuple[Tensor, Tensor]:
    """Means of m = min(n_segments, L) contiguous segments of the kept rows of x (B, H, L, Dh).

    The r-th kept position of an example with n kept joins segment floor(r m / n): sizes differ
    by at most one (exactly n / m when m divides n, as in the paper), and padding changes
    neither the segments nor their means. keep (B, L) bool or None. Returns the means
    (B, H, m, Dh) and which segments are non-empty: (m,) without keep, else (B, 1, m).
    """
    L = x.size(2)
    m = min(n_segments, L)
    if keep is None:
        segment = torch.arange(L, device=x.device) * m // L  # (L,)
        member = F.one_hot(segment, m).T.to(x.dtype)  # (m, L)
    else:
        rank = (keep.long().cumsum(-1) - 1).clamp_min(0)  # (B, L) index among kept positions
        segment = rank * m // keep.sum(-1, keepdim=True).clamp_min(1)  # (B, L)
        member = F.one_hot(segment, m).transpose(-1, -2) * keep[:, None, :]  # (B, m, L)
        member = member[:, None].to(x.dtype)  # (B, 1, m, L)
    counts = member.sum(-1)  # (m,) or (B, 1, m)
    means = (member @ x) / counts.clamp_min(1.0)[..., None]  # (B, H, m, Dh)
    return means, counts > 0


def iterative_pinv(a: Tensor, iterations: int) -> Tensor:
    """Moore-Penrose pseudo-inverse of a (..., p, n) by the cubically convergent iteration the
    paper uses (Razavi et al., 2014): Z0 = A^T / (|A|_1 |A|_inf),
    Z <- Z (13 I - A Z (15 I - A Z (7 I - A Z))) / 4. Each matrix gets its own Z0."""
    eye = torch.eye(a.size(-2), dtype=a.dtype, device=a.device)  # (p, p)
    norm = a.abs().sum(-1).amax(-1) * a.abs().sum(-2).amax(-1)  # (...)
    z = a.transpose(-1, -2) / norm.clamp_min(torch.finfo(a.dtype).tiny)[..., None, None]
    for _ in range(iterations):
        az = a @ z  # (..., p, p)
        z = 0.25 * z @ (13 * eye - az @ (15 * eye - az @ (7 * eye - az)))  # (..., n, p)
    return z


@ATTENTION.register("nystrom")
class NystromAttention(EfficientAttention):
    """Nystrom approximation of softmax attention with m segment-mean landmarks.

    Time O((T + S) m Dh + i m^3), memory O((T + S) m + m^2) per head (m = n_landmarks,
    i = pinv_iterations). Exact (up to the pseudo-inverse's convergence) when m >= T and
    m >= S: every landmark is then one token. Masked keys are left out of the key landmarks
    and of softmax(Q~ K^T); in self-attention the key-padding mask also marks the padded
    queries, which are left out of the query landmarks (`needs_query_keep`). The implied weights
    C pinv(W) R rows sum to 1 only up to convergence and may hold negative entries.
    Not causal: every landmark averages a whole segment, the future included.

    Args:
        n_landmarks: m (the budget: more landmarks, closer to exact attention).
        pinv_iterations: steps of the iterative pseudo-inverse (the paper uses 6).
        head_dim, d_context, bias: as in EfficientAttention.
    """

    supports_causal: ClassVar[bool] = False
    supports_mask: ClassVar[bool] = True
    supports_cross: ClassVar[bool] = True
    supports_cache: ClassVar[bool] = False
    permutation_equivariant: ClassVar[bool] = False
    normalized_weights: ClassVar[bool] = False
    needs_query_keep: ClassVar[bool] = True
    budget_knob: ClassVar[str | None] = "n_landmarks"
    complexity: ClassVar[str] = "time O((T + S) m Dh + i m^3), memory O((T + S) m + m^2)"

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        *,
        n_landmarks: int = 32,
        pinv_iterations: int = 6,
        head_dim: int | None = None,
        d_context: int | None = None,
        bias: bool = True,
    ) -> None:
        super().__init__(d_model, n_heads, head_dim=head_dim, d_context=d_context, bias=bias)
        check_positive("n_landmarks", n_landmarks)
        check_positive("pinv_iterations", pinv_iterations)
        self.n_landmarks = n_landmarks
        self.pinv_iterations = pinv_iterations

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
        query_keep: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        q = q * q.size(-1) ** -0.5  # the softmax scale, folded into the queries and landmarks
        q_land, q_present = segment_means(q, self.n_landmarks, query_keep)  # (B, H, mq, Dh)
        k_land, k_present = segment_means(k, self.n_landmarks, key_keep)  # (B, H, mk, Dh)
        key_mask = None if key_keep is None else key_keep[:, None, None, :]  # (B, 1, 1, S)
        land_mask = None if key_keep is None else k_present.unsqueeze(-2)  # (B, 1, 1, mk)
        kernel_1 = AF.masked_softmax(q @ k_land.transpose(-1, -2), land_mask)  # (B, H, T, mk)
        kernel_2 = AF.masked_softmax(q_land @ k_land.transpose(-1, -2), land_mask)  # (.., mq, mk)
        kernel_3 = AF.masked_softmax(q_land @ k.transpose(-1, -2), key_mask)  # (B, H, mq, S)
        if query_keep is not None:  # empty query landmarks: rows of zeros
            kernel_2 = kernel_2 * q_present.unsqueeze(-1)  # (B, H, mq, mk)
            kernel_3 = kernel_3 * q_present.unsqueeze(-1)  # (B, H, mq, S)
        kernel_1, kernel_3 = kernel_1.to(v.dtype), kernel_3.to(v.dtype)
        z = iterative_pinv(kernel_2, self.pinv_iterations).to(v.dtype)  # (B, H, mk, mq)
        out = kernel_1 @ (z @ (kernel_3 @ v))  # (B, H, T, Dh)
        weights = (kernel_1 @ z) @ kernel_3 if need_weights else None  # (B, H, T, S)
        return out, weights

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, n_landmarks={self.n_landmarks}, "
            f"pinv_iterations={self.pinv_iterations}"
        )
