"""Shared plumbing for the RNN-era attentions (Bahdanau et al., 2014; Luong et al., 2015).

In those encoder-decoders the context vector is a weighted average of the encoder states
themselves: c_t = sum_s a_ts h_s. There is no value projection; only the score function
differs between mechanisms. Heads split the state into H chunks, each with its own weights
(n_heads=1 is the paper's form). Subclasses implement `project_keys` and `score`.
"""

from __future__ import annotations

from torch import Tensor, nn

from attnlab.nn import functional as AF
from attnlab.nn.attention.base import Attention, AttentionOutput
from attnlab.nn.cache import KVCache


class RecurrentEraAttention(Attention):
    """Values are the (split) context states; output (B, T, D) via a projection only if the
    context width differs from d_model."""

    def __init__(self, d_model: int, n_heads: int, d_context: int | None, dropout: float) -> None:
        super().__init__(d_model, n_heads)
        self.d_context = d_model if d_context is None else d_context
        if self.d_context % n_heads != 0:
            raise ValueError(
                f"context width ({self.d_context}) must be divisible by n_heads ({n_heads})"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.dropout = dropout
        self.out_proj = (
            nn.Identity() if self.d_context == d_model else nn.Linear(self.d_context, d_model)
        )

    def project_keys(self, source: Tensor) -> Tensor:
        """(B, S, Dc) -> keys (B, H, S, Dk) as the score function needs them."""
        raise NotImplementedError

    def score(self, x: Tensor, keys: Tensor) -> Tensor:
        """Queries x (B, T, D) against keys (B, H, S, Dk) -> scores (B, H, T, S)."""
        raise NotImplementedError

    def split(self, x: Tensor) -> Tensor:
        B, S, D = x.shape
        return x.view(B, S, self.n_heads, D // self.n_heads).transpose(1, 2)  # (B, H, S, D/H)

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
        position_ids: Tensor | None = None,  # unused: these mechanisms have no rotary form
    ) -> AttentionOutput:
        self.check_call(x, context, mask, causal, cache, bias)
        B, T, _ = x.shape
        keys, values = self.keys_and_values(
            x, context, cache, self.d_context,
            lambda source: (self.project_keys(source), self.split(source)),
        )  # (B, H, S, Dk), (B, H, S, Dc / H)
        S = keys.size(2)
        if mask is not None:
            AF.check_mask(mask, B, self.n_heads, T, S)
        mask = AF.merge_masks(mask, causal, T, S, x.device)
        scores = self.score(x, keys)  # (B, H, T, S)
        out, weights = AF.attend(
            scores, values, mask=mask, need_weights=need_weights, bias=bias,
            dropout_p=self.dropout if self.training else 0.0,
        )  # (B, H, T, Dc / H)
        out = out.transpose(1, 2).reshape(B, T, self.d_context)  # (B, T, Dc)
        return AttentionOutput(self.out_proj(out), weights, cache)
