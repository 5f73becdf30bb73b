"""Linformer attention (Wang, Li, Khabsa, Fang and Ma, 2020, "Linformer: Self-Attention with
Linear Complexity").

Keys and values are projected along the length axis by learned matrices E, F of shape
(rank, max_length) before attention: softmax(Q (E K)^T / sqrt(Dh)) (F V). Each query then
attends over `rank` mixed slots instead of S keys, so time and memory are linear in the length.
A length S <= max_length uses the first S columns of E and F. Padded keys and values are zeroed
before projecting, so they add nothing to any slot.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.nn.attention.base import ATTENTION, check_positive
from attnlab.nn.attention.efficient import EfficientAttention


@ATTENTION.register("linformer")
class LinformerAttention(EfficientAttention):
    """Softmax attention over `rank` learned projections of the keys and values.

    Time O((T + S) r Dh), memory O(T r + r Dh) per head (r = rank). Weights are over the r
    slots, so need_weights returns (B, H, T, r). Not causal: every slot mixes all S positions,
    the future included, so no query could be kept from seeing it. Not order-free either:
    column j of E belongs to position j.

    Args:
        rank: r projected slots (the budget: r = S with E = F = identity is exact attention).
        max_length: the longest key length accepted (columns of E and F).
        share_kv: one projection for keys and values (E = F), as the paper's sharing option.
        dropout: dropout on the attention weights over the slots during training.
        head_dim, d_context, bias: as in EfficientAttention.
    """

    supports_causal: ClassVar[bool] = False
    supports_mask: ClassVar[bool] = True
    supports_cross: ClassVar[bool] = True
    supports_cache: ClassVar[bool] = False
    weights_over_keys: ClassVar[bool] = False
    permutation_equivariant: ClassVar[bool] = False
    budget_knob: ClassVar[str | None] = "rank"
    complexity: ClassVar[str] = "time O((T + S) r Dh), memory O(T r + r Dh)"

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        *,
        rank: int = 64,
        max_length: int = 4096,
        share_kv: bool = False,
        dropout: float = 0.0,
        head_dim: int | None = None,
        d_context: int | None = None,
        bias: bool = True,
    ) -> None:
        super().__init__(d_model, n_heads, head_dim=head_dim, d_context=d_context, bias=bias)
        check_positive("rank", rank)
        check_positive("max_length", max_length)
        if not isinstance(share_kv, bool):
            raise ValueError(f"share_kv must be a bool, got {share_kv!r}")
        if not (isinstance(dropout, int | float) and 0.0 <= dropout < 1.0):
            raise ValueError(f"dropout must be a float in [0, 1), got {dropout!r}")
        self.rank = rank
        self.max_length = max_length
        self.share_kv = share_kv
        self.dropout = float(dropout)
        # N(0, 1 / rank): a Johnson-Lindenstrauss projection, the paper's analysis and init.
        std = 1.0 / math.sqrt(rank)
        self.seq_proj_k = nn.Parameter(torch.randn(rank, max_length) * std)  # (r, max_length) E
        self.seq_proj_v = None if share_kv else nn.Parameter(torch.randn(rank, max_length) * std)

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
        S = k.size(2)
        if S > self.max_length:
            raise ValueError(
                f"Linformer: key length must be at most max_length={self.max_length}, got {S}; "
                "build it with a larger max_length"
            )
        if key_keep is not None:
            keep = key_keep[:, None, :, None]  # (B, 1, S, 1)
            k = k.masked_fill(~keep, 0.0)  # padded keys and values add nothing to a slot
            v = v.masked_fill(~keep, 0.0)
        proj_v = self.seq_proj_k if self.seq_proj_v is None else self.seq_proj_v
        k_slots = self.seq_proj_k[:, :S].to(k.dtype) @ k  # (B, H, r, Dh)
        v_slots = proj_v[:, :S].to(v.dtype) @ v  # (B, H, r, Dh)
        scores = q @ k_slots.transpose(-1, -2) / math.sqrt(q.size(-1))  # (B, H, T, r)
        weights = torch.softmax(scores, dim=-1)  # (B, H, T, r)
        if key_keep is not None:  # a query with no real key attends to nothing
            weights = weights * key_keep.any(-1)[:, None, None, None].to(weights.dtype)
        dropped = F.dropout(weights, p=self.dropout, training=self.training)
        out = dropped @ v_slots  # (B, H, T, Dh)
        return out, (weights if need_weights else None)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, rank={self.rank}, max_length={self.max_length}, "
            f"share_kv={self.share_kv}, dropout={self.dropout}"
        )
