"""Attention with linear biases (Press et al., 2022, "Train Short, Test Long: Attention with
Linear Biases Enables Input Length Extrapolation").

No position embeddings: head h adds -m_h * |i - j| to its attention scores. The slopes are a
geometric sequence starting at 2^(-8/H) with that same ratio (1/2, 1/4, ..., 1/256 for 8
heads). For H not a power of two, the paper takes the 2^floor(log2 H) slopes of the closest
lower power of two, then fills up with every other slope of the next power of two (sec. 3).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from attnlab.nn.position.base import (
    POSITION,
    PositionEncoding,
    check_positive_int,
    relative_positions,
)


def alibi_slopes(n_heads: int) -> Tensor:
    """(n_heads,) float32 head slopes, computed in float64 by the paper's rule."""
    check_positive_int("n_heads", n_heads)

    def geometric(n: int) -> list[float]:  # n a power of two
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    lower = 2 ** math.floor(math.log2(n_heads))
    slopes = geometric(lower) + geometric(2 * lower)[0::2][: n_heads - lower]
    return torch.tensor(slopes, dtype=torch.float64).float()


@POSITION.register("alibi")
class ALiBi(PositionEncoding):
    """`slopes` (H,) non-persistent buffer, no parameters;
    `forward(query_length, key_length, *, device) -> (1, H, T, S)` score bias -m_h |i - j|."""

    kind = "bias"

    def __init__(self, *, d_model: int, n_heads: int, max_seq_len: int) -> None:
        super().__init__(d_model=d_model, n_heads=n_heads, max_seq_len=max_seq_len)
        self.register_buffer("slopes", alibi_slopes(n_heads), persistent=False)  # (H,)

    def forward(self, query_length: int, key_length: int, *,
                device: torch.device | None = None) -> Tensor:
        device = self.slopes.device if device is None else device
        distance = relative_positions(query_length, key_length, device).abs()  # (T, S)
        # multiply in at least float32: distances reach thousands, beyond bfloat16's precision
        dtype = torch.promote_types(self.slopes.dtype, torch.float32)
        slopes = self.slopes.to(device=device, dtype=dtype)  # (H,)
        bias = -slopes[:, None, None] * distance.to(dtype)  # (H, T, S)
        return bias.unsqueeze(0).to(self.slopes.dtype)  # (1, H, T, S)
