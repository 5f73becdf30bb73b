"""Attention with linear biases (Press et al., 2022, "Train Short, Test Long").

No position embeddings; each head h adds -m_h * |i - j| to its scores, with head slopes m_h a
geometric sequence (2^(-8/H), 2^(-16/H), ...). For H not a power of two, the paper takes the
slopes of the closest lower power of two and fills up with every other slope of the next one.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from attnlab.nn.position.base import POSITION, PositionEncoding, relative_positions


def alibi_slopes(n_heads: int) -> Tensor:
    def power_of_two_slopes(n: int) -> list[float]:
        start = 2 ** (-8 / n)
        return [start ** (i + 1) for i in range(n)]

    if math.log2(n_heads).is_integer():
        return torch.tensor(power_of_two_slopes(n_heads))
    lower = 2 ** math.floor(math.log2(n_heads))
    extra = power_of_two_slopes(2 * lower)[0::2][: n_heads - lower]
    return torch.tensor(power_of_two_slopes(lower) + extra)


@POSITION.register("alibi")
class ALiBi(PositionEncoding):
    kind = "bias"

    def __init__(self, *, d_model: int, n_heads: int, max_seq_len: int) -> None:
        super().__init__(d_model=d_model, n_heads=n_heads, max_seq_len=max_seq_len)
        self.register_buffer("slopes", alibi_slopes(n_heads), persistent=False)  # (H,)

    def forward(self, query_length: int, key_length: int, *,
                device: torch.device | None = None) -> Tensor:
        """(1, H, T, S) additive score bias."""
        distance = relative_positions(query_length, key_length, device).abs()  # (T, S)
        slopes = self.slopes.to(device) if device is not None else self.slopes
        return -(slopes[:, None, None] * distance).unsqueeze(0)  # (1, H, T, S)
