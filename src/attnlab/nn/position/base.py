"""The POSITION registry and the three ways a model uses a position scheme.

Self-attention is blind to order (Vaswani et al., 2017, sec. 3.5); each scheme below puts order
back in one of three places, named by the class attribute `kind`:

- "absolute" (sinusoidal, learned): `forward(position_ids (T,) or (B, T)) -> (T, D) or (B, T, D)`,
  added to the token embeddings before the first layer. Positions must lie in [0, max_seq_len).
- "bias" (T5 relative buckets, ALiBi): `forward(query_length, key_length, *, device)
  -> (1, H, T, S)`, added to the attention scores before the softmax; computed once per stack
  and shared by its layers. Queries align lower-right (KV-cache decoding): query i sits at
  position S - T + i, key j at position j.
- "rotary" (RoPE): `forward(x (B, H, T, Dh), position_ids (T,) or (B, T)) -> x rotated`, applied
  separately to queries and keys inside self-attention, after the projections.

Every entry is built with the same keywords `d_model`, `n_heads`, `max_seq_len` plus its own
options (with defaults), so `POSITION.build(name, d_model=64, n_heads=4, max_seq_len=128)` works
for every name. Precomputed tables are non-persistent buffers: only learned weights are saved.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from attnlab.registry import Registry

POSITION: Registry[PositionEncoding] = Registry("position")

KINDS = ("absolute", "bias", "rotary")


def check_positive_int(name: str, value: Any) -> None:
    """ValueError naming `name` unless `value` is an int > 0 (bools are rejected)."""
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


class PositionEncoding(nn.Module):
    """Base of every POSITION entry: validates and stores the common keywords.

    Subclasses set `kind` to one of KINDS (checked when the subclass is defined) and implement
    the forward of that kind, as described in the module docstring.
    """

    kind: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if getattr(cls, "kind", None) not in KINDS:
            raise TypeError(
                f"{cls.__name__}.kind must be one of {KINDS}, got {getattr(cls, 'kind', None)!r}"
            )

    def __init__(self, *, d_model: int, n_heads: int, max_seq_len: int) -> None:
        super().__init__()
        check_positive_int("d_model", d_model)
        check_positive_int("n_heads", n_heads)
        check_positive_int("max_seq_len", max_seq_len)
        self.d_model = d_model
        self.n_heads = n_heads
        self.max_seq_len = max_seq_len

    def check_positions(self, position_ids: Tensor) -> None:
        """Absolute positions: an integer tensor (T,) or (B, T) with values in [0, max_seq_len)."""
        if position_ids.is_floating_point() or position_ids.is_complex():
            raise TypeError(f"position_ids must be an integer tensor, got {position_ids.dtype}")
        if position_ids.dim() not in (1, 2):
            raise ValueError(
                f"position_ids must have shape (T,) or (B, T), got {tuple(position_ids.shape)}"
            )
        if position_ids.numel() == 0 or torch.compiler.is_compiling():
            return  # the range check reads values: skip it inside a compiled graph
        low, high = int(position_ids.min()), int(position_ids.max())
        if low < 0 or high >= self.max_seq_len:
            bad = low if low < 0 else high
            raise ValueError(
                f"position_ids must be in [0, max_seq_len={self.max_seq_len}), "
                f"got position {bad}"
            )

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, n_heads={self.n_heads}, max_seq_len={self.max_seq_len}"


def relative_positions(query_length: int, key_length: int, device: torch.device | None) -> Tensor:
    """Key position minus query position, (T, S), with queries aligned lower-right.

    Query i sits at absolute position key_length - query_length + i, so with a KV cache the
    newest query is always the last key, and a (1, S) call equals the last row of an (S, S) one.
    """
    for name, value in (("query_length", query_length), ("key_length", key_length)):
        if not isinstance(value, int | torch.SymInt) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    if query_length > key_length:
        raise ValueError(
            f"query_length must be <= key_length (queries align lower-right), "
            f"got query_length={query_length}, key_length={key_length}"
        )
    query_pos = torch.arange(key_length - query_length, key_length, device=device)  # (T,)
    key_pos = torch.arange(key_length, device=device)  # (S,)
    return key_pos[None, :] - query_pos[:, None]  # (T, S)
