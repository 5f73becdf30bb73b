"""Bucketed relative position bias (Raffel et al., 2020, "Exploring the Limits of Transfer
Learning with a Unified Text-to-Text Transformer", T5, sec. 2.1).

Each head learns one scalar per bucket of the relative position key - query, added to the
attention scores. Per direction (both directions when bidirectional, only the past otherwise),
half the buckets are exact small distances and the other half cover distances up to
`max_distance` on a log scale; farther distances share the last bucket, so the bias extends to
any length. The embedding is named `relative_attention_bias` as in Hugging Face T5.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from attnlab.nn.position.base import (
    POSITION,
    PositionEncoding,
    check_positive_int,
    relative_positions,
)


def relative_position_bucket(relative_position: Tensor, bidirectional: bool = True,
                             num_buckets: int = 32, max_distance: int = 128) -> Tensor:
    """Map integer relative positions (key - query, any shape) to bucket ids in [0, num_buckets).

    Pure function of its arguments; with bidirectional=False, keys after the query (positive
    relative positions) all share bucket 0 with distance 0, as causal masking hides them anyway.
    """
    buckets = torch.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets = buckets + (relative_position > 0).long() * num_buckets  # keys after the query
        distance = relative_position.abs()
    else:
        distance = (-relative_position).clamp(min=0)
    max_exact = num_buckets // 2
    is_small = distance < max_exact
    # clamp(min=1) keeps log finite for the small distances that torch.where discards below
    log_ratio = torch.log(distance.float().clamp(min=1) / max_exact) / math.log(
        max_distance / max_exact
    )
    large = max_exact + (log_ratio * (num_buckets - max_exact)).long()
    large = large.clamp(max=num_buckets - 1)
    return buckets + torch.where(is_small, distance, large)


@POSITION.register("relative")
class RelativePositionBias(PositionEncoding):
    """`relative_attention_bias` (num_buckets, H) embedding;
    `forward(query_length, key_length, *, device) -> (1, H, T, S)` score bias."""

    kind = "bias"

    def __init__(self, *, d_model: int, n_heads: int, max_seq_len: int, num_buckets: int = 32,
                 max_distance: int = 128, bidirectional: bool = True) -> None:
        super().__init__(d_model=d_model, n_heads=n_heads, max_seq_len=max_seq_len)
        check_positive_int("num_buckets", num_buckets)
        check_positive_int("max_distance", max_distance)
        # per direction: at least one exact bucket and one log bucket
        per_direction = num_buckets // 2 if bidirectional else num_buckets
        if per_direction < 2 or (bidirectional and num_buckets % 2):
            expected = "an even int >= 4" if bidirectional else "an int >= 2"
            raise ValueError(f"num_buckets must be {expected} (bidirectional={bidirectional}), "
                             f"got {num_buckets}")
        max_exact = per_direction // 2
        if max_distance <= max_exact:
            raise ValueError(f"max_distance must be > the {max_exact} exact buckets per "
                             f"direction, got {max_distance}")
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.bidirectional = bidirectional
        self.relative_attention_bias = nn.Embedding(num_buckets, n_heads)

    def forward(self, query_length: int, key_length: int, *,
                device: torch.device | None = None) -> Tensor:
        weight = self.relative_attention_bias.weight  # (num_buckets, H)
        relative = relative_positions(query_length, key_length, weight.device)  # (T, S)
        bucket = relative_position_bucket(relative, self.bidirectional, self.num_buckets,
                                          self.max_distance)  # (T, S)
        bias = self.relative_attention_bias(bucket)  # (T, S, H)
        bias = bias.permute(2, 0, 1).unsqueeze(0)  # (1, H, T, S)
        return bias if device is None else bias.to(device)

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, num_buckets={self.num_buckets}, "
                f"max_distance={self.max_distance}, bidirectional={self.bidirectional}")
