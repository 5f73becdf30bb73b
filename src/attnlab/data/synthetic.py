"""Seeded synthetic sequence tasks that need attention: reversal and copy.

Reversing a sequence forces every output position to look up a distant input position, so a
model without attention (a fixed-size context vector) degrades with length, and a trained
Transformer's cross-attention draws a clean anti-diagonal.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Reserved ids shared with the Transformer presets' defaults.
PAD, BOS, EOS = 0, 1, 2
FIRST_SYMBOL = 3


def sequence_task_batch(
    generator: torch.Generator,
    batch_size: int,
    *,
    vocab_size: int,
    min_len: int,
    max_len: int,
    task: str = "reverse",
) -> tuple[Tensor, Tensor, Tensor]:
    """A padded batch (input_ids (B, S), attention_mask (B, S), labels (B, S + 1)).

    Labels end with EOS and use -100 at padded positions (ignored by the loss).
    """
    if task not in ("reverse", "copy"):
        raise ValueError(f"task must be 'reverse' or 'copy', got {task!r}")
    if not 1 <= min_len <= max_len:
        raise ValueError(f"need 1 <= min_len <= max_len, got {min_len}, {max_len}")
    if vocab_size <= FIRST_SYMBOL + 1:
        raise ValueError(f"vocab_size must be > {FIRST_SYMBOL + 1}, got {vocab_size}")
    lengths = torch.randint(min_len, max_len + 1, (batch_size,), generator=generator)  # (B,)
    S = int(lengths.max())
    symbols = torch.randint(FIRST_SYMBOL, vocab_size, (batch_size, S), generator=generator)
    positions = torch.arange(S)[None, :]  # (1, S)
    attention_mask = positions < lengths[:, None]  # (B, S)
    input_ids = symbols.masked_fill(~attention_mask, PAD)  # (B, S)
    if task == "reverse":
        # position i of the target takes source position length - 1 - i
        index = (lengths[:, None] - 1 - positions).clamp(min=0)  # (B, S)
        target = torch.gather(symbols, 1, index)
    else:
        target = symbols
    labels = torch.full((batch_size, S + 1), -100, dtype=torch.long)  # (B, S + 1)
    labels[:, :S] = target.masked_fill(~attention_mask, -100)
    labels[torch.arange(batch_size), lengths] = EOS
    return input_ids, attention_mask.long(), labels


class RandomWindows:
    """An endless, resumable stream of uniformly random token windows {"input_ids": (B, T)}:
    batch i is a pure function of (seed, i). Nothing to learn in it: a fixed load for
    measuring and testing the training machinery (precision, checkpointing, compile)."""

    def __init__(self, vocab_size: int, batch_size: int, length: int, seed: int = 0) -> None:
        self.vocab_size, self.batch_size, self.length = vocab_size, batch_size, length
        self.seed, self.index = seed, 0

    def next(self) -> dict[str, Tensor]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.index)
        self.index += 1
        ids = torch.randint(0, self.vocab_size, (self.batch_size, self.length),
                            generator=generator)  # (B, T)
        return {"input_ids": ids}

    def skip(self, count: int) -> None:
        self.index += count

    def state_dict(self) -> dict[str, int]:
        return {"index": self.index}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.index = int(state["index"])
