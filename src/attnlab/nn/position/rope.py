"""Rotary position embedding (Su et al., 2021, "RoFormer: Enhanced Transformer with Rotary
Position Embedding").

Queries and keys are rotated in 2-D planes by angles position * base^(-2i/Dh), so the dot
product q_m . k_n depends only on the offset m - n, and norms are unchanged. Pairs follow the
"rotate half" layout of Hugging Face LLaMA (dimension i pairs with i + Dh/2, not 2i with 2i+1),
so LLaMA weights load without permuting the q/k projections. No parameters and no table: the
angles are computed from the positions in float32 (or float64 for float64 inputs), so any
position works; max_seq_len is accepted for the common contract only.
"""

from __future__ import annotations

import torch
from torch import Tensor

from attnlab.nn.position.base import POSITION, PositionEncoding, check_positive_int


def rotate_half(x: Tensor) -> Tensor:
    """(x1, x2) -> (-x2, x1) over the two halves of the last axis: a 90-degree turn per pair."""
    first, second = x.chunk(2, dim=-1)  # (..., Dh/2) each
    return torch.cat([-second, first], dim=-1)  # (..., Dh)


@POSITION.register("rope")
class RotaryEmbedding(PositionEncoding):
    """No parameters or buffers; `forward(x (B, H, T, Dh), position_ids (T,) or (B, T))
    -> rotated x`, same shape and dtype; applied to queries and keys separately."""

    kind = "rotary"

    def __init__(self, *, d_model: int, n_heads: int, max_seq_len: int,
                 head_dim: int | None = None, base: float = 10000.0) -> None:
        super().__init__(d_model=d_model, n_heads=n_heads, max_seq_len=max_seq_len)
        if head_dim is None:
            if d_model % n_heads:
                raise ValueError(f"d_model must be divisible by n_heads to derive head_dim, "
                                 f"got d_model={d_model}, n_heads={n_heads}")
            head_dim = d_model // n_heads
        check_positive_int("head_dim", head_dim)
        if head_dim % 2:
            raise ValueError(f"head_dim must be even for rotation pairs, got {head_dim}")
        if not base > 1:
            raise ValueError(f"base must be > 1, got {base!r}")
        self.head_dim = head_dim
        self.base = base

    def inv_freq(self, device: torch.device | None = None,
                 dtype: torch.dtype = torch.float32) -> Tensor:
        """(Dh/2,) angular frequencies base^(-2i/Dh), the same float32 ops as Hugging Face.

        Recomputed per call (Dh/2 numbers) rather than kept as a buffer, so casting the model
        to bfloat16 cannot round the frequencies.
        """
        exponent = torch.arange(0, self.head_dim, 2, device=device, dtype=dtype) / self.head_dim
        return 1.0 / self.base**exponent  # (Dh/2,)

    def forward(self, x: Tensor, position_ids: Tensor) -> Tensor:
        if x.dim() != 4 or x.size(-1) != self.head_dim:
            raise ValueError(f"x must have shape (B, H, T, Dh={self.head_dim}), "
                             f"got {tuple(x.shape)}")
        if position_ids.is_floating_point() or position_ids.is_complex():
            raise TypeError(f"position_ids must be an integer tensor, got {position_ids.dtype}")
        B, T = x.size(0), x.size(2)
        if (position_ids.dim() not in (1, 2) or position_ids.size(-1) != T
                or (position_ids.dim() == 2 and position_ids.size(0) not in (1, B))):
            raise ValueError(f"position_ids must have shape (T,) or (B, T) with B={B}, T={T}, "
                             f"got {tuple(position_ids.shape)}")
        dtype = torch.promote_types(x.dtype, torch.float32)  # never rotate in half precision
        positions = position_ids.to(device=x.device, dtype=dtype)  # (T,) or (B, T)
        angles = positions[..., None] * self.inv_freq(x.device, dtype)  # (..., T, Dh/2)
        angles = torch.cat([angles, angles], dim=-1)  # (..., T, Dh)
        if angles.dim() == 3:
            angles = angles[:, None]  # (B, 1, T, Dh), broadcast over heads
        x_up = x.to(dtype)
        rotated = x_up * angles.cos() + rotate_half(x_up) * angles.sin()  # (B, H, T, Dh)
        return rotated.to(x.dtype)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, head_dim={self.head_dim}, base={self.base}"
