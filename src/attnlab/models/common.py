"""Input checks and small helpers shared by every model family."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def check_input_ids(ids: Tensor, config: Any, name: str = "input_ids", offset: int = 0) -> None:
    """Raise a clear error unless `ids` is a non-empty integer (B, T) tensor of valid token ids
    whose positions (after `offset` cached ones) fit in `config.max_seq_len`."""
    if not isinstance(ids, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(ids).__name__}")
    if ids.is_floating_point() or ids.dtype == torch.bool or ids.is_complex():
        raise TypeError(f"{name} must hold integer token ids, got dtype {ids.dtype}")
    if ids.dim() != 2:
        raise ValueError(f"{name} must have shape (batch, length), got {tuple(ids.shape)}")
    if ids.numel() == 0:
        raise ValueError(f"{name} is empty: shape {tuple(ids.shape)}")
    length = offset + ids.size(1)
    if length > config.max_seq_len:
        raise ValueError(
            f"{name}: sequence length {length} exceeds max_seq_len={config.max_seq_len}"
        )
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= config.vocab_size:
        raise ValueError(
            f"{name} must be token ids in [0, vocab_size={config.vocab_size}), "
            f"got values in [{low}, {high}]"
        )


def shift_right(labels: Tensor, start_token_id: int, pad_token_id: int) -> Tensor:
    """Teacher forcing: decoder inputs are the labels shifted one step right after a start
    token; ignored label positions (-100) become padding."""
    shifted = labels.new_full(labels.shape, pad_token_id)  # (B, T)
    shifted[:, 1:] = labels[:, :-1]
    shifted[:, 0] = start_token_id
    return shifted.masked_fill(shifted == -100, pad_token_id)
