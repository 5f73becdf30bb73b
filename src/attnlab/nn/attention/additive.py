"""Additive attention (Bahdanau, Cho and Bengio, 2014, "Neural Machine Translation by Jointly
Learning to Align and Translate").

score(s_t, h_s) = v_a^T tanh(W_a s_t + U_a h_s): a one-hidden-layer MLP scores every
(query, key) pair. Cost O(T * S * d_attn) time and memory, since the tanh is taken per pair.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from attnlab.nn.attention.base import ATTENTION
from attnlab.nn.attention.recurrent_era import RecurrentEraAttention


@ATTENTION.register("additive")
class AdditiveAttention(RecurrentEraAttention):
    """Bahdanau attention. `d_attn` is the width of the scoring MLP (default d_model), split
    across heads; `n_heads=1` is the paper's form."""

    def __init__(
        self,
        d_model: int,
        n_heads: int = 1,
        *,
        d_context: int | None = None,
        d_attn: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(d_model, n_heads, d_context, dropout)
        d_attn = d_model if d_attn is None else d_attn
        if d_attn % n_heads != 0:
            raise ValueError(f"d_attn ({d_attn}) must be divisible by n_heads ({n_heads})")
        self.head_attn = d_attn // n_heads
        self.q_proj = nn.Linear(d_model, d_attn, bias=False)  # W_a
        self.k_proj = nn.Linear(self.d_context, d_attn, bias=True)  # U_a (its bias = b_a)
        self.score_vector = nn.Parameter(  # v_a, one per head
            torch.empty(n_heads, self.head_attn).uniform_(-1, 1) / math.sqrt(self.head_attn)
        )

    def project_keys(self, source: Tensor) -> Tensor:
        B, S, _ = source.shape
        keys = self.k_proj(source).view(B, S, self.n_heads, self.head_attn)  # (B, S, H, Da)
        return keys.transpose(1, 2)  # (B, H, S, Da)

    def score(self, x: Tensor, keys: Tensor) -> Tensor:
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_attn).transpose(1, 2)  # (B,H,T,Da)
        hidden = torch.tanh(q.unsqueeze(3) + keys.unsqueeze(2))  # (B, H, T, S, Da)
        return torch.einsum("bhtsa,ha->bhts", hidden, self.score_vector)  # (B, H, T, S)
