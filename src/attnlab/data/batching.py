"""Batches by token count (Vaswani et al. 2017, sec. 5.1: "sentence pairs were batched together
by approximate sequence length"), resumable to the exact batch.

Pairs are sorted by length so a batch holds similar lengths (little padding); batches are then
filled up to `max_tokens` (counting padding: rows x longest side) and their order shuffled per
epoch by a generator seeded with (seed, epoch). The position (epoch, index) is therefore the
whole state: resuming from it replays exactly the batches an uninterrupted run would see.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

Pair = tuple[Sequence[int], Sequence[int]]


class ShuffledRows:
    """Row indices of a fixed set of n rows in batches, reshuffled every epoch by a generator
    seeded with seed + epoch: batch i is a pure function of (seed, i), so the state to
    checkpoint is one counter. Subclasses turn `next_rows()` into a batch."""

    def __init__(self, n_rows: int, batch_size: int, seed: int) -> None:
        self.n_rows, self.batch_size, self.seed = n_rows, batch_size, seed
        self.per_epoch = max(1, n_rows // batch_size)
        self.index = 0

    def next_rows(self) -> Tensor:
        """The next batch's row indices (batch_size,) (fewer if n_rows < batch_size)."""
        epoch, position = divmod(self.index, self.per_epoch)
        self.index += 1
        order = torch.randperm(self.n_rows,
                               generator=torch.Generator().manual_seed(self.seed + epoch))
        return order[position * self.batch_size:(position + 1) * self.batch_size]

    def state_dict(self) -> dict[str, Any]:
        return {"index": self.index}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.index = int(state["index"])


def collate(pairs: Sequence[Pair], pad_id: int) -> dict[str, Tensor]:
    """(source ids, target ids ending in EOS) pairs -> padded tensors for the model.

    input_ids (B, S), attention_mask (B, S), labels (B, T) with -100 on padding.
    """
    B = len(pairs)
    S = max(len(s) for s, _ in pairs)
    T = max(len(t) for _, t in pairs)
    input_ids = torch.full((B, S), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((B, S), dtype=torch.long)
    labels = torch.full((B, T), -100, dtype=torch.long)
    for row, (src, tgt) in enumerate(pairs):
        input_ids[row, : len(src)] = torch.as_tensor(src)
        attention_mask[row, : len(src)] = 1
        labels[row, : len(tgt)] = torch.as_tensor(tgt)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def plan_batches(lengths: Sequence[tuple[int, int]], max_tokens: int) -> list[list[int]]:
    """Group pair indices, sorted by length, into batches of at most `max_tokens` padded tokens."""
    if max_tokens <= 0:
        raise ValueError(f"max_tokens must be positive, got {max_tokens}")
    order = sorted(range(len(lengths)), key=lambda i: (max(lengths[i]), lengths[i]))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        size = max(lengths[i])
        if size > max_tokens:
            raise ValueError(
                f"pair {i} has {size} tokens, more than max_tokens={max_tokens}; raise "
                "--max-tokens or filter long pairs"
            )
        if current and (len(current) + 1) * max(longest, size) > max_tokens:
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, size)
    if current:
        batches.append(current)
    return batches


class TokenBatches:
    """An endless, resumable stream of token-count batches over tokenized pairs."""

    def __init__(self, pairs: Sequence[Pair], *, max_tokens: int, pad_id: int, seed: int = 0,
                 shuffle: bool = True) -> None:
        if not pairs:
            raise ValueError("TokenBatches needs at least one pair")
        self.pairs = pairs
        self.pad_id = pad_id
        self.seed = seed
        self.shuffle = shuffle
        self.plan = plan_batches([(len(s), len(t)) for s, t in pairs], max_tokens)
        self.epoch = 0
        self.index = 0
        self._order = self._epoch_order()

    def _epoch_order(self) -> list[int]:
        if not self.shuffle:
            return list(range(len(self.plan)))
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(len(self.plan), generator=generator).tolist()

    def __len__(self) -> int:
        """Batches per epoch."""
        return len(self.plan)

    def next(self) -> dict[str, Tensor]:
        if self.index >= len(self.plan):
            self.epoch += 1
            self.index = 0
            self._order = self._epoch_order()
        batch = [self.pairs[i] for i in self.plan[self._order[self.index]]]
        self.index += 1
        return collate(batch, self.pad_id)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "index": self.index, "seed": self.seed,
                "batches_per_epoch": len(self.plan)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["batches_per_epoch"] != len(self.plan) or state["seed"] != self.seed:
            raise ValueError(
                "the checkpoint was written for different data or --max-tokens/--seed "
                f"({state['batches_per_epoch']} batches/epoch, seed {state['seed']}; now "
                f"{len(self.plan)}, seed {self.seed}): resume with the same data and settings"
            )
        self.epoch, self.index = int(state["epoch"]), int(state["index"])
        self._order = self._epoch_order()


def iterate_in_order(pairs: Sequence[Pair], max_tokens: int, pad_id: int):
    """Batches for evaluation: (original indices, batch) in length order, each pair once."""
    for indices in plan_batches([(len(s), len(t)) for s, t in pairs], max_tokens):
        yield indices, collate([pairs[i] for i in indices], pad_id)
