"""Performer attention, FAVOR+ (Choromanski, Likhosherstov, Dohan, Song, Gane, Sarlos, Hawkins,
Davis, Mohiuddin, Kaiser, Belanger, Colwell and Weller, 2021, "Rethinking Attention with
Performers").

exp(q . k) is estimated without bias by positive random features phi(x) = exp(W x - |x|^2 / 2)
/ sqrt(m), E[phi(q) . phi(k)] = exp(q . k), with q, k scaled by Dh^-1/4 so the kernel is the
softmax's exp(q . k / sqrt(Dh)). The m rows of W are orthogonal in blocks of Dh (orthogonal
random features, lower variance) with Gaussian-like lengths. Attention then factorises as in
linear attention: phi(Q) (phi(K)^T V) normalised by phi(Q) phi(K)^T 1, causal by prefix sums.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from attnlab.nn.attention.base import ATTENTION, check_positive
from attnlab.nn.attention.efficient import EfficientAttention
from attnlab.nn.attention.linear import NEG, kernel_attention, kernel_weights


def orthogonal_random_features(n_features: int, head_dim: int) -> Tensor:
    """(m, Dh) projection: blocks of Dh orthonormal rows, each row rescaled to the length of an
    independent Gaussian vector, so every row is marginally N(0, I) (FAVOR+'s ORF)."""
    blocks = []
    for _ in range(math.ceil(n_features / head_dim)):
        q, r = torch.linalg.qr(torch.randn(head_dim, head_dim))  # (Dh, Dh) orthogonal
        # Signs of R's diagonal make Q uniformly (Haar) distributed; without them its rows are
        # not uniform on the sphere and the kernel estimate is biased.
        blocks.append((q * torch.sign(torch.diagonal(r))).T)
    rows = torch.cat(blocks)[:n_features]  # (m, Dh)
    lengths = torch.randn(n_features, head_dim).norm(dim=-1, keepdim=True)  # (m, 1) chi(Dh)
    return rows * lengths  # (m, Dh)


@ATTENTION.register("performer")
class PerformerAttention(EfficientAttention):
    """FAVOR+ estimate of softmax attention with m positive orthogonal random features.

    Time O((T + S) m Dh) non-causal, O(T m Dh + T C m) causal; memory O((T + S) m + T C +
    (T / C) m Dh) per head (C = chunk_size). The features are a buffer drawn at construction
    from the global RNG (`redraw()` draws new ones); the KV cache recomputes from cached keys.

    Numerics: each query's features are divided by their largest one (cancels in its row);
    each key's log-scale is kept apart and keys are rescaled to the largest visible one, in
    causal mode only over keys at or before the query, so the future never enters, even
    through rounding.

    Args:
        n_features: m random features (the budget: the estimator's variance falls as 1 / m).
        chunk_size: causal chunk length C (speed and memory only, not the result).
        head_dim, d_context, bias: as in EfficientAttention.
    """

    supports_causal: ClassVar[bool] = True
    supports_mask: ClassVar[bool] = True
    supports_cross: ClassVar[bool] = True
    supports_cache: ClassVar[bool] = True
    permutation_equivariant: ClassVar[bool] = True
    budget_knob: ClassVar[str | None] = "n_features"
    complexity: ClassVar[str] = (
        "time O((T + S) m Dh + T C m), memory O((T + S) m + T C + (T / C) m Dh)"
    )

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        *,
        n_features: int = 64,
        chunk_size: int = 64,
        head_dim: int | None = None,
        d_context: int | None = None,
        bias: bool = True,
    ) -> None:
        super().__init__(d_model, n_heads, head_dim=head_dim, d_context=d_context, bias=bias)
        check_positive("n_features", n_features)
        check_positive("chunk_size", chunk_size)
        self.n_features = n_features
        self.chunk_size = chunk_size
        self.register_buffer(
            "projection", orthogonal_random_features(n_features, self.head_dim)
        )  # (m, Dh)

    @torch.no_grad()
    def redraw(self) -> None:
        """Draw new random features from the global RNG (in place, same dtype and device)."""
        fresh = orthogonal_random_features(self.n_features, self.head_dim)  # (m, Dh)
        self.projection.copy_(fresh)

    def log_features(self, x: Tensor) -> Tensor:
        """log phi(x) up to a constant: W x~ - |x~|^2 / 2 with x~ = x Dh^-1/4, (..., L, m)."""
        x = x * self.head_dim**-0.25
        proj = x @ self.projection.to(x.dtype).T  # (B, H, L, m)
        return proj - 0.5 * (x * x).sum(-1, keepdim=True)  # (B, H, L, m)

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
        a_q = self.log_features(q.to(work))  # (B, H, T, m)
        fq = (a_q - a_q.detach().amax(-1, keepdim=True)).exp()  # (B, H, T, m), max 1 per row
        a_k = self.log_features(k.to(work))  # (B, H, S, m)
        key_scale = a_k.detach().amax(-1)  # (B, H, S): key j's features = fk_j exp(scale_j)
        fk = (a_k - key_scale[..., None]).exp()  # (B, H, S, m)
        if key_keep is not None:
            fk = fk.masked_fill(~key_keep[:, None, :, None], 0.0)  # masked keys weigh 0
            key_scale = key_scale.masked_fill(~key_keep[:, None, :], NEG)
        out = kernel_attention(
            fq, fk, v.to(work), causal=causal, key_log_scale=key_scale, chunk_size=self.chunk_size
        )  # (B, H, T, Dh)
        weights = None
        if need_weights:
            weights = kernel_weights(fq, fk, key_scale, causal).to(q.dtype)  # (B, H, T, S)
        return out.to(q.dtype), weights

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, n_features={self.n_features}, chunk_size={self.chunk_size}"
        )
