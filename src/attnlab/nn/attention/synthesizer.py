"""Synthesizer attention (Tay, Bahri, Metzler, Juan, Zhao and Zheng, 2021, "Synthesizer:
Rethinking Self-Attention in Transformer Models").

The attention scores are synthesized instead of computed from query-key dot products:
"dense" predicts token i's row of scores from x_i alone, B_i = W2 relu(W1 x_i + b1) + b2,
scoring `max_length` positions of which the first T are used; "random" learns one score
matrix R per head, the same for every input. Softmax over the keys and the weighted sum of
values are as in dot-product attention. Its point is that no token looks at another to decide
where to attend; it is as quadratic in T as exact attention.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.nn import functional as AF
from attnlab.nn.attention.base import ATTENTION, Attention, AttentionOutput, check_positive
from attnlab.nn.cache import KVCache

KINDS = ("dense", "random")


@ATTENTION.register("synthesizer")
class SynthesizerAttention(Attention):
    """Dense or random Synthesizer self-attention over H heads.

    Time O(H T^2 Dh) (dense adds O(H T Dh L) for the scores over L = max_length positions) and
    memory O(H T^2): quadratic like exact attention, without any token-token dot product.

    Args:
        d_model: model width D.
        n_heads: heads H.
        kind: "dense" (scores from each token alone) or "random" (learned fixed scores).
        max_length: longest sequence L (the score width).
        head_dim: Dh (default D // H), the width of the values and of the dense hidden layer.
        bias: biases on the projections.
        dropout: dropout on the attention weights during training.
    """

    supports_causal: ClassVar[bool] = True
    supports_mask: ClassVar[bool] = True
    supports_full_mask: ClassVar[bool] = True
    supports_cross: ClassVar[bool] = False
    supports_cache: ClassVar[bool] = False
    supports_bias: ClassVar[bool] = True
    weights_over_keys: ClassVar[bool] = True
    permutation_equivariant: ClassVar[bool] = False
    budget_knob: ClassVar[str | None] = None
    complexity: ClassVar[str] = (
        "time O(H T^2 Dh + H T Dh L), memory O(H T^2 + H Dh L) (dense) or O(H L^2) (random): "
        "quadratic, no token-token dot products"
    )

    def __init__(self, d_model: int, n_heads: int, *, kind: str = "dense", max_length: int = 512,
                 head_dim: int | None = None, bias: bool = True, dropout: float = 0.0) -> None:
        super().__init__(d_model, n_heads)
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        check_positive("max_length", max_length)
        if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not (
                0.0 <= dropout < 1.0):
            raise ValueError(f"dropout must be a float in [0, 1), got {dropout!r}")
        if head_dim is None:
            if d_model % n_heads != 0:
                raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads}), "
                                 "or pass head_dim explicitly")
            head_dim = d_model // n_heads
        check_positive("head_dim", head_dim)
        self.kind, self.max_length, self.head_dim = kind, max_length, head_dim
        self.dropout = float(dropout)
        width = n_heads * head_dim
        if kind == "dense":
            self.hidden = nn.Linear(d_model, width, bias=bias)  # W1, b1 of every head
            self.score_weight = nn.Parameter(
                torch.randn(n_heads, head_dim, max_length) / math.sqrt(head_dim))  # W2
            self.score_bias = nn.Parameter(torch.zeros(n_heads, max_length))  # b2
        else:
            self.random_scores = nn.Parameter(torch.randn(n_heads, max_length, max_length))
        self.v_proj = nn.Linear(d_model, width, bias=bias)
        self.out_proj = nn.Linear(width, d_model, bias=bias)

    def split_heads(self, x: Tensor) -> Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, Dh)

    def scores(self, x: Tensor) -> Tensor:
        """Synthesized scores (B or 1, H, T, T) for x (B, T, D)."""
        T = x.size(1)
        if self.kind == "random":
            return self.random_scores[None, :, :T, :T]  # (1, H, T, T)
        hidden = F.relu(self.split_heads(self.hidden(x)))  # (B, H, T, Dh)
        return hidden @ self.score_weight[..., :T] + self.score_bias[:, None, :T]  # (B, H, T, T)

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        *,
        mask: Tensor | None = None,
        causal: bool = False,
        cache: KVCache | None = None,
        need_weights: bool = False,
        bias: Tensor | None = None,
        position_ids: Tensor | None = None,  # unused: positions are the score columns
    ) -> AttentionOutput:
        self.check_call(x, context, mask, causal, cache, bias)
        B, T, _ = x.shape
        if T > self.max_length:
            raise ValueError(f"sequence length must be <= max_length={self.max_length}, got {T}")
        if mask is not None:
            AF.check_mask(mask, B, self.n_heads, T, T)
        mask = AF.merge_masks(mask, causal, T, T, x.device)
        scores = self.scores(x).expand(B, self.n_heads, T, T)  # (B, H, T, T)
        v = self.split_heads(self.v_proj(x))  # (B, H, T, Dh)
        out, weights = AF.attend(
            scores.to(v.dtype), v, mask=mask, bias=bias, need_weights=need_weights,
            dropout_p=self.dropout if self.training else 0.0,
        )  # (B, H, T, Dh)
        out = out.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim)  # (B, T, H * Dh)
        return AttentionOutput(self.out_proj(out), weights, None)

    def extra_repr(self) -> str:
        return (f"kind={self.kind!r}, n_heads={self.n_heads}, head_dim={self.head_dim}, "
                f"max_length={self.max_length}, dropout={self.dropout}")
