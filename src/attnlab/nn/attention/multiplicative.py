"""Multiplicative attention (Luong, Pham and Manning, 2015, "Effective Approaches to
Attention-based Neural Machine Translation").

score(h_t, h_s) = h_t^T h_s ("dot") or h_t^T W_a h_s ("general"). Unscaled, as in the paper;
`scaled=True` divides by sqrt(d) like the Transformer. Cost O(T * S * d).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from attnlab.nn.attention.base import ATTENTION
from attnlab.nn.attention.recurrent_era import RecurrentEraAttention

SCORES = ("dot", "general")


@ATTENTION.register("multiplicative")
class MultiplicativeAttention(RecurrentEraAttention):
    """Luong attention with the `dot` or `general` score; `n_heads=1` is the paper's form."""

    def __init__(
        self,
        d_model: int,
        n_heads: int = 1,
        *,
        score: str = "general",
        d_context: int | None = None,
        scaled: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(d_model, n_heads, d_context, dropout)
        if score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {score!r}")
        if score == "dot" and self.d_context != d_model:
            raise ValueError(
                f"score='dot' needs d_context == d_model, got {self.d_context} != {d_model}; "
                "use score='general'"
            )
        if d_model % n_heads != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.score_name = score
        self.scale = 1.0 / math.sqrt(d_model // n_heads) if scaled else 1.0
        # W_a maps context states into query space: h_t^T (W_a h_s).
        self.k_proj = nn.Linear(self.d_context, d_model, bias=False) if score == "general" else None

    def project_keys(self, source: Tensor) -> Tensor:
        keys = source if self.k_proj is None else self.k_proj(source)  # (B, S, D)
        B, S, D = keys.shape
        return keys.view(B, S, self.n_heads, D // self.n_heads).transpose(1, 2)  # (B, H, S, D/H)

    def score(self, x: Tensor, keys: Tensor) -> Tensor:
        B, T, D = x.shape
        q = x.view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2)  # (B, H, T, D/H)
        return torch.matmul(q, keys.transpose(-2, -1)) * self.scale  # (B, H, T, S)

    def extra_repr(self) -> str:
        return f"score={self.score_name!r}, n_heads={self.n_heads}"
