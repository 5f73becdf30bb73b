"""Sinusoidal positional encoding (Vaswani et al., 2017, "Attention Is All You Need", sec. 3.5).

PE(pos, 2i) = sin(pos / 10000^(2i/D)), PE(pos, 2i+1) = cos(pos / 10000^(2i/D)). For any offset
k, PE(pos + k) is a fixed linear map (a rotation of each (sin, cos) pair) of PE(pos), which the
paper gives as the reason attention can learn to use relative offsets. No parameters: the table
is precomputed in float64 up to max_seq_len and kept as a non-persistent float32 buffer.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from attnlab.nn.position.base import POSITION, PositionEncoding


def sinusoidal_table(length: int, d_model: int, base: float = 10000.0) -> Tensor:
    """(length, d_model) float32 table of the paper's formula, computed in float64."""
    position = torch.arange(length, dtype=torch.float64)[:, None]  # (L, 1)
    exponent = torch.arange(0, d_model, 2, dtype=torch.float64) / d_model  # (D/2,)
    angles = position * torch.exp(-math.log(base) * exponent)  # (L, D/2)
    table = torch.empty(length, d_model, dtype=torch.float64)  # (L, D)
    table[:, 0::2] = torch.sin(angles)
    table[:, 1::2] = torch.cos(angles)
    return table.float()


@POSITION.register("sinusoidal")
class SinusoidalPositionEncoding(PositionEncoding):
    """Fixed sin/cos table; `forward(position_ids (T,) or (B, T)) -> (T, D) or (B, T, D)`."""

    kind = "absolute"
    make_table = staticmethod(sinusoidal_table)  # (length, d_model, base) -> (L, D) float32

    def __init__(self, *, d_model: int, n_heads: int, max_seq_len: int,
                 base: float = 10000.0) -> None:
        super().__init__(d_model=d_model, n_heads=n_heads, max_seq_len=max_seq_len)
        if d_model % 2:
            raise ValueError(f"d_model must be even for sin/cos pairs, got {d_model}")
        if not base > 1:
            raise ValueError(f"base must be > 1, got {base!r}")
        self.base = base
        table = self.make_table(max_seq_len, d_model, base)  # (max_seq_len, D)
        self.register_buffer("table", table, persistent=False)

    def forward(self, position_ids: Tensor) -> Tensor:
        self.check_positions(position_ids)
        return self.table[position_ids]  # (T, D) or (B, T, D)
