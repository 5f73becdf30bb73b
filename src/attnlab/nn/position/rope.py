"""Rotary position embedding (Su et al., 2021, "RoFormer").

Queries and keys are rotated in 2-D planes by angles proportional to their position, so the
dot product q_m . k_n depends only on the offset m - n. Pairs follow the "rotate half"
layout of Hugging Face LLaMA (dimension i pairs with i + Dh/2), so those weights load as-is.
No parameters; angles are computed in float32 from the positions.
"""

from __future__ import annotations

import torch
from torch import Tensor

from attnlab.nn.position.base import POSITION, PositionEncoding


def rotate_half(x: Tensor) -> Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat([-second, first], dim=-1)


@POSITION.register("rope")
class RotaryEmbedding(PositionEncoding):
    kind = "rotary"

    def __init__(self, *, d_model: int, n_heads: int, max_seq_len: int,
                 head_dim: int | None = None, base: float = 10000.0) -> None:
        super().__init__(d_model=d_model, n_heads=n_heads, max_seq_len=max_seq_len)
        head_dim = d_model // n_heads if head_dim is None else head_dim
        if head_dim % 2:
            raise ValueError(f"RoPE needs an even head_dim, got {head_dim}")
        self.head_dim = head_dim
        self.base = base
        inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)  # (Dh/2,)

    def forward(self, x: Tensor, position_ids: Tensor) -> Tensor:
        """x (B, H, T, Dh); position_ids (T,) or (B, T) -> x rotated, same shape and dtype."""
        if x.size(-1) != self.head_dim:
            raise ValueError(f"RoPE built for head_dim={self.head_dim}, got {x.size(-1)}")
        angles = position_ids.float()[..., None] * self.inv_freq  # (..., T, Dh/2)
        angles = torch.cat([angles, angles], dim=-1)  # (..., T, Dh)
        if angles.dim() == 3:
            angles = angles[:, None]  # (B, 1, T, Dh)
        cos, sin = angles.cos(), angles.sin()
        rotated = x.float() * cos + rotate_half(x.float()) * sin
        return rotated.to(x.dtype)
