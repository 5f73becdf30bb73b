"""Bucketed relative position bias (Raffel et al., 2020, T5).

Each head learns one scalar per bucket of the relative distance key - query. Half the buckets
(per direction, when bidirectional) are exact small distances; the rest cover distances up to
`max_distance` on a log scale; farther distances share the last bucket. The bias is added to
the attention scores. Cost O(T * S) per forward, shared by all layers of a stack.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from attnlab.nn.position.base import POSITION, PositionEncoding, relative_positions


def relative_position_bucket(
    relative_position: Tensor, *, bidirectional: bool, num_buckets: int, max_distance: int
) -> Tensor:
    """Map relative positions (key - query) to bucket ids in [0, num_buckets)."""
    buckets = torch.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets = buckets + (relative_position > 0).long() * num_buckets  # keys after the query
        distance = relative_position.abs()
    else:
        distance = (-relative_position).clamp(min=0)  # only the past counts
    max_exact = num_buckets // 2
    is_small = distance < max_exact
    # log-spaced buckets for distances in [max_exact, max_distance)
    log_ratio = torch.log(distance.float().clamp(min=1) / max_exact) / math.log(
        max_distance / max_exact
    )
    large = max_exact + (log_ratio * (num_buckets - max_exact)).long()
    large = large.clamp(max=num_buckets - 1)
    return buckets + torch.where(is_small, distance, large)


@POSITION.register("relative")
class RelativePositionBias(PositionEncoding):
    kind = "bias"

    def __init__(self, *, d_model: int, n_heads: int, max_seq_len: int, num_buckets: int = 32,
                 max_distance: int = 128, bidirectional: bool = True) -> None:
        super().__init__(d_model=d_model, n_heads=n_heads, max_seq_len=max_seq_len)
        if num_buckets < 4 or (bidirectional and num_buckets % 2):
            raise ValueError(f"num_buckets must be >= 4 (and even if bidirectional), "
                             f"got {num_buckets}")
        if max_distance <= num_buckets // (4 if bidirectional else 2):
            raise ValueError(f"max_distance must exceed the exact-bucket range, got {max_distance}")
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.bidirectional = bidirectional
        self.relative_attention_bias = nn.Embedding(num_buckets, n_heads)

    def forward(self, query_length: int, key_length: int, *,
                device: torch.device | None = None) -> Tensor:
        """(1, H, T, S) additive score bias."""
        relative = relative_positions(query_length, key_length, device)  # (T, S)
        bucket = relative_position_bucket(relative, bidirectional=self.bidirectional,
                                          num_buckets=self.num_buckets,
                                          max_distance=self.max_distance)  # (T, S)
        bias = self.relative_attention_bias(bucket)  # (T, S, H)
        return bias.permute(2, 0, 1).unsqueeze(0)  # (1, H, T, S)

    def extra_repr(self) -> str:
        return (f"num_buckets={self.num_buckets}, max_distance={self.max_distance}, "
                f"bidirectional={self.bidirectional}")
