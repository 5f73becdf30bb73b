"""Batches by token count (Vaswani et al. 2017, sec. 5.1: "sentence pairs were batched together
by approximate sequence length"), resumable to the exact batch.

Pairs are sorted by length so a batch holds similar lengths (little padding); batches are then
filled up to `max_tokens` (counting padding: rows x longest side) and their order shuffled per
epoch by a generator seeded with (seed, epoch). The position (epoch, index) is therefore the
whole state: resuming from it replays exactly the batches an uninterrupted run would see, and
`skip(n)` moves it by n batches without building them (a rank of a distributed run reads its
share that way).

The plan is numpy (`BatchPlan`: one order array and batch boundaries, built from two length
arrays), so planning tens of millions of memory-mapped pairs (`data/shards.py`) holds a few
int64 arrays, never a Python list per pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
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

    def skip(self, n: int) -> None:
        """Advance by n batches without building them (as n calls of `next_rows`)."""
        self.index += n

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


@dataclass(frozen=True)
class BatchPlan:
    """Batches of pair indices: batch b is `order[bounds[b]:bounds[b + 1]]`."""

    order: np.ndarray  # (pairs,) int64, pair indices sorted by length
    bounds: np.ndarray  # (batches + 1,) int64

    def __len__(self) -> int:
        return len(self.bounds) - 1

    def __getitem__(self, b: int) -> np.ndarray:
        return self.order[self.bounds[b]:self.bounds[b + 1]]


def plan_lengths(src_lengths: np.ndarray, tgt_lengths: np.ndarray, max_tokens: int) -> BatchPlan:
    """Pair indices sorted by (longer side, source, target length; stable), cut into batches
    of at most `max_tokens` padded tokens (rows x longest side), filled greedily."""
    if max_tokens <= 0:
        raise ValueError(f"max_tokens must be positive, got {max_tokens}")
    src = np.asarray(src_lengths, dtype=np.int64)
    tgt = np.asarray(tgt_lengths, dtype=np.int64)
    size = np.maximum(src, tgt)
    if size.size and size.max() > max_tokens:
        i = int(np.argmax(size > max_tokens))
        raise ValueError(f"pair {i} has {int(size[i])} tokens, more than max_tokens="
                         f"{max_tokens}; raise --max-tokens or filter long pairs")
    order = np.lexsort((tgt, src, size))  # stable: ties keep the pairs' order
    sorted_size = size[order]  # (pairs,) non-decreasing: a batch's longest is its last pair
    bounds, start, n = [0], 0, len(order)
    while start < n:
        # Rows k = 0, 1, ... fit while (k + 1) * size[start + k] <= max_tokens (sizes only grow,
        # so the first that does not ends the batch); at most max_tokens // size[start] rows.
        window = sorted_size[start:start + max_tokens // max(int(sorted_size[start]), 1)]
        fits = (np.arange(1, len(window) + 1) * window) <= max_tokens
        rows = int(np.argmin(fits)) if not fits.all() else len(window)
        start += max(rows, 1)
        bounds.append(start)
    return BatchPlan(order.astype(np.int64), np.asarray(bounds, dtype=np.int64))


def pair_lengths(pairs: Sequence[Pair]) -> tuple[np.ndarray, np.ndarray]:
    """(source lengths, target lengths) of the pairs; a source that knows them (memory-mapped
    pairs) gives its own `lengths()`."""
    if hasattr(pairs, "lengths"):
        return pairs.lengths()
    src = np.fromiter((len(s) for s, _ in pairs), np.int64, len(pairs))
    tgt = np.fromiter((len(t) for _, t in pairs), np.int64, len(pairs))
    return src, tgt


def plan_batches(lengths: Sequence[tuple[int, int]], max_tokens: int) -> list[list[int]]:
    """Group pair indices, sorted by length, into batches of at most `max_tokens` padded tokens."""
    pairs = np.asarray(lengths, dtype=np.int64).reshape(-1, 2)
    plan = plan_lengths(pairs[:, 0], pairs[:, 1], max_tokens)
    return [plan[b].tolist() for b in range(len(plan))]


class TokenBatches:
    """An endless, resumable stream of token-count batches over tokenized pairs (lists of ids
    in memory, or memory-mapped pairs with a `lengths()` method, collated a batch at a time)."""

    def __init__(self, pairs: Sequence[Pair], *, max_tokens: int, pad_id: int, seed: int = 0,
                 shuffle: bool = True) -> None:
        if not pairs:
            raise ValueError("TokenBatches needs at least one pair")
        self.pairs = pairs
        self.pad_id = pad_id
        self.seed = seed
        self.shuffle = shuffle
        self.plan = plan_lengths(*pair_lengths(pairs), max_tokens)
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
        batch = [self.pairs[i] for i in self.plan[self._order[self.index]].tolist()]
        self.index += 1
        return collate(batch, self.pad_id)

    def skip(self, n: int) -> None:
        """Advance by n batches without building them: the state n calls of `next` leave."""
        if n <= 0:
            return
        per_epoch = len(self.plan)
        epoch, index = divmod(self.epoch * per_epoch + self.index + n, per_epoch)
        if index == 0:  # as `next` leaves it: at the end of the epoch, not past it
            epoch, index = epoch - 1, per_epoch
        if epoch != self.epoch:
            self.epoch = epoch
            self._order = self._epoch_order()
        self.index = index

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
    plan = plan_lengths(*pair_lengths(pairs), max_tokens)
    for b in range(len(plan)):
        indices = plan[b].tolist()
        yield indices, collate([pairs[i] for i in indices], pad_id)
