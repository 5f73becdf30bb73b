"""The POSITION registry and the three ways a model uses a position scheme.

- kind "absolute" (sinusoidal, learned): `forward(position_ids (T,) or (B, T)) -> (..., T, D)`,
  added to the token embeddings.
- kind "bias" (T5 relative buckets, ALiBi): `forward(query_length, key_length, *, device)
  -> (1, H, T, S)`, added to the attention scores; computed once per stack and shared by its
  layers. Queries are aligned lower-right: query i sits at position S - T + i.
- kind "rotary" (RoPE): `forward(x (B, H, T, Dh), position_ids) -> x rotated`, applied to
  queries and keys inside self-attention.

Every entry is built with the same keywords, `d_model`, `n_heads`, `max_seq_len`, plus its own
options, so `POSITION.build(name, d_model=64, n_heads=4, max_seq_len=128)` works for all.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from attnlab.registry import Registry

POSITION: Registry = Registry("position")

KINDS = ("absolute", "bias", "rotary")


class PositionEncoding(nn.Module):
    kind: ClassVar[str]

    def __init__(self, *, d_model: int, n_heads: int, max_seq_len: int) -> None:
        super().__init__()
        for name, value in (("d_model", d_model), ("n_heads", n_heads),
                            ("max_seq_len", max_seq_len)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.d_model = d_model
        self.n_heads = n_heads
        self.max_seq_len = max_seq_len

    def check_positions(self, position_ids: Tensor) -> None:
        """Positions must be integers in [0, max_seq_len)."""
        if position_ids.is_floating_point():
            raise TypeError(f"position_ids must be integers, got {position_ids.dtype}")
        if position_ids.numel() == 0:
            return
        low, high = int(position_ids.min()), int(position_ids.max())
        if low < 0 or high >= self.max_seq_len:
            raise ValueError(
                f"positions must be in [0, max_seq_len={self.max_seq_len}), got [{low}, {high}]"
            )


def relative_positions(query_length: int, key_length: int, device: torch.device | None) -> Tensor:
    """key position - query position (T, S), queries aligned lower-right (KV-cache decoding)."""
    query_pos = torch.arange(key_length - query_length, key_length, device=device)  # (T,)
    key_pos = torch.arange(key_length, device=device)  # (S,)
    return key_pos[None, :] - query_pos[:, None]  # (T, S)
