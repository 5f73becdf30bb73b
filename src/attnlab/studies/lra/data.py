"""What every Long-Range-Arena-style task hands to the model and the study (Tay et al., 2021,
"Long Range Arena: A Benchmark for Efficient Transformers").

A task is a fixed, seeded train/test split of token sequences padded to one length, so every
attention variant sees exactly the same examples. Padding id is 0 in every vocabulary. A task
also says how the classifier pools its sequence: "mean" over real tokens, or "first" where its
position 0 holds a token that asks the question (LRA's [CLS]; retrieval's query token).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from attnlab.models.sequence_classifier import POOLINGS

PAD_ID = 0


@dataclass(frozen=True)
class Split:
    """input_ids (N, T) long, attention_mask (N, T) bool (True = real token), labels (N,)."""

    input_ids: Tensor
    attention_mask: Tensor
    labels: Tensor

    def __post_init__(self) -> None:
        n, t = self.input_ids.shape
        if self.attention_mask.shape != (n, t) or self.labels.shape != (n,):
            raise ValueError(
                f"input_ids {tuple(self.input_ids.shape)}, attention_mask "
                f"{tuple(self.attention_mask.shape)} and labels {tuple(self.labels.shape)} "
                "must be (N, T), (N, T) and (N,)"
            )

    def __len__(self) -> int:
        return self.labels.numel()


@dataclass(frozen=True)
class TaskData:
    """A generated task: vocabulary (index = token id), class count, padded length, splits,
    and the pooling its classifier uses ("mean" or "first", see POOLINGS)."""

    name: str
    vocab: tuple[str, ...]
    n_classes: int
    seq_len: int
    train: Split
    test: Split
    notes: str = ""
    pooling: str = "mean"

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def majority_accuracy(self) -> float:
        """Test accuracy of always answering the most frequent training label (chance level)."""
        majority = Counter(self.train.labels.tolist()).most_common(1)[0][0]
        return float((self.test.labels == majority).float().mean())

    def describe(self) -> dict[str, Any]:
        lengths = self.train.attention_mask.sum(1).float()  # (N,)
        return {
            "vocab_size": self.vocab_size, "n_classes": self.n_classes, "seq_len": self.seq_len,
            "train_size": len(self.train), "test_size": len(self.test),
            "mean_length": float(lengths.mean()), "min_length": int(lengths.min()),
            "max_length": int(lengths.max()), "chance": self.majority_accuracy(),
            "test_label_counts": dict(sorted(Counter(self.test.labels.tolist()).items())),
            "pooling": self.pooling, "notes": self.notes,
        }


def pad_sequences(sequences: list[list[int]], labels: list[int], seq_len: int) -> Split:
    """Right-pad token id lists to `seq_len` (a longer one is a ValueError naming its length)."""
    longest = max(len(s) for s in sequences)
    if longest > seq_len:
        raise ValueError(f"seq_len must be >= the longest sequence ({longest}), got {seq_len}")
    input_ids = torch.full((len(sequences), seq_len), PAD_ID, dtype=torch.long)  # (N, T)
    attention_mask = torch.zeros((len(sequences), seq_len), dtype=torch.bool)  # (N, T)
    for row, ids in enumerate(sequences):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, : len(ids)] = True  # by length: never infer padding from the id
    return Split(input_ids, attention_mask, torch.tensor(labels, dtype=torch.long))


def round_up(value: int, multiple: int) -> int:
    """Padded lengths are multiples of 64 so block-based variants (BigBird, Reformer buckets,
    Longformer windows) get lengths they can tile."""
    return -(-value // multiple) * multiple
