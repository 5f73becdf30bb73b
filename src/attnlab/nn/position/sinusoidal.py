"""Sinusoidal positional encoding (Vaswani et al., 2017, sec. 3.5).

PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d)). For any offset
k, PE(pos + k) is a fixed rotation of PE(pos), which lets attention express relative offsets.
No parameters; the table is a non-persistent buffer (not in the state dict).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from attnlab.nn.position.base import POSITION, PositionEncoding


def sinusoidal_table(length: int, d_model: int, base: float = 10000.0) -> Tensor:
    """(length, d_model) table, computed in float64 and returned as float32."""
    position = torch.arange(length, dtype=torch.float64)[:, None]  # (L, 1)
    inv_freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float64)
                         * (-math.log(base) / d_model))  # (D/2,)
    table = torch.zeros(length, d_model, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * inv_freq)
    table[:, 1::2] = torch.cos(position * inv_freq)
    return table.float()


@POSITION.register("sinusoidal")
class SinusoidalPositionEncoding(PositionEncoding):
    kind = "absolute"

    def __init__(self, *, d_model: int, n_heads: int, max_seq_len: int,
                 base: float = 10000.0) -> None:
        super().__init__(d_model=d_model, n_heads=n_heads, max_seq_len=max_seq_len)
        if d_model % 2:
            raise ValueError(f"sinusoidal positions need an even d_model, got {d_model}")
        self.register_buffer("table", sinusoidal_table(max_seq_len, d_model, base),
                             persistent=False)

    def forward(self, position_ids: Tensor) -> Tensor:
        """position_ids (T,) or (B, T) -> (T, D) or (B, T, D)."""
        self.check_positions(position_ids)
        return self.table[position_ids]
