"""Long-range probes: can an architecture carry information across a distance d?

Three generated sequence-to-sequence tasks over random symbols (seeded, nothing downloaded):
- copy: output the source as it is; d = its length;
- reverse: output the source backwards (the first output needs the last input); d = length;
- recall: the source lists key-value pairs, then a separator and one key; the output is that
  key's value. d = positions from the queried key to the query (odd, >= 3).
A fixed-size context vector (Sutskever et al., 2014) must squeeze all of it into one state;
attention can look back. Each architecture trains on a mix of all distances for the same
time, then is scored per distance by greedy decoding.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from attnlab.data.batching import collate
from attnlab.generation.greedy import greedy_decode
from attnlab.training.trainer import Trainer, TrainerConfig

TASKS = ("copy", "reverse", "recall")
PAD, BOS, EOS, FIRST_SYMBOL = 0, 1, 2, 4


@dataclass(frozen=True)
class ProbeSpec:
    """Vocabulary: FIRST_SYMBOL + symbols ids; recall uses the first half for keys, the second
    half for values, and one separator id after them."""

    symbols: int = 64

    @property
    def vocab_size(self) -> int:
        return FIRST_SYMBOL + self.symbols + 1

    @property
    def separator(self) -> int:
        return FIRST_SYMBOL + self.symbols


def make_example(task: str, d: int, rng: random.Random,
                 spec: ProbeSpec) -> tuple[list[int], list[int]]:
    """One (source ids, target ids + EOS) pair whose long-range distance is d."""
    if task in ("copy", "reverse"):
        source = [FIRST_SYMBOL + rng.randrange(spec.symbols) for _ in range(d)]
        target = source if task == "copy" else source[::-1]
        return source, [*target, EOS]
    if task == "recall":
        half = spec.symbols // 2
        # one pair before the queried one, then `after` pairs (2 tokens each) fill the
        # distance from the queried key to the query: d = 2 * after + 3
        after = min(half - 2, max(0, (d - 3) // 2))
        keys = rng.sample(range(half), after + 2)
        pairs = [(FIRST_SYMBOL + k, FIRST_SYMBOL + half + rng.randrange(half)) for k in keys]
        queried = pairs[1]
        source = [t for pair in pairs for t in pair] + [spec.separator, queried[0]]
        return source, [queried[1], EOS]
    raise ValueError(f"task must be one of {TASKS}, got {task!r}")


def distance_of(task: str, d: int, spec: ProbeSpec) -> int:
    """The distance an example built for `d` really has (recall is capped by the key count)."""
    if task != "recall":
        return d
    after = min(spec.symbols // 2 - 2, max(0, (d - 3) // 2))
    return 2 * after + 3


class ProbeBatches:
    """Endless seeded batches mixing all distances (the Trainer's batch-source protocol)."""

    def __init__(self, task: str, distances: list[int], batch_size: int, seed: int,
                 spec: ProbeSpec) -> None:
        self.task, self.distances, self.batch_size, self.spec = task, distances, batch_size, spec
        self.seed, self.index = seed, 0

    def next(self) -> dict[str, Tensor]:
        rng = random.Random(self.seed * 1_000_003 + self.index)
        self.index += 1
        pairs = [make_example(self.task, rng.choice(self.distances), rng, self.spec)
                 for _ in range(self.batch_size)]
        return collate(pairs, PAD)

    def state_dict(self) -> dict[str, Any]:
        return {"index": self.index}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.index = state["index"]


def _loss(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, int]:
    return model(**batch).loss, int((batch["labels"] != -100).sum())


@torch.no_grad()
def score(model: nn.Module, task: str, d: int, spec: ProbeSpec, *, examples: int = 64,
          seed: int = 12345) -> dict[str, float]:
    """Exact match (every token and EOS right) and per-token accuracy (EOS not counted) of
    greedy outputs at distance d."""
    rng = random.Random(seed + d)
    pairs = [make_example(task, d, rng, spec) for _ in range(examples)]
    batch = collate(pairs, PAD)
    model.eval()
    out = greedy_decode(model, batch["input_ids"], batch["attention_mask"],
                        max_new_tokens=max(len(t) for _, t in pairs))
    exact = tokens = correct = 0
    for row, (_, target) in enumerate(pairs):
        predicted = out[row].tolist()[: len(target)]
        predicted += [PAD] * (len(target) - len(predicted))
        hits = [p == t for p, t in zip(predicted, target, strict=True)]
        exact += all(hits)
        correct, tokens = correct + sum(hits[:-1]), tokens + len(target) - 1
    return {"exact": exact / examples, "token_accuracy": correct / tokens}


def run_probe(build: Callable[[int], nn.Module], task: str, distances: list[int], *,
              seconds: float, seed: int = 0, spec: ProbeSpec | None = None,
              lr: float = 3e-3, batch_size: int = 32) -> dict[str, Any]:
    """Train `build(vocab_size)` on the task for `seconds`, then score every distance."""
    spec = spec or ProbeSpec()
    torch.manual_seed(seed)
    model = build(spec.vocab_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.0)
    warmup = 50
    trainer = Trainer(model, optimizer, lambda step: lr * min(1.0, (step + 1) / warmup),
                      ProbeBatches(task, distances, batch_size, seed, spec), _loss,
                      TrainerConfig(max_steps=1_000_000, time_budget=seconds, clip_norm=1.0,
                                    progress=False, log_every=25))
    result = trainer.fit()
    scores = {distance_of(task, d, spec): score(model, task, d, spec) for d in distances}
    return {"task": task, "steps": result.step, "train_seconds": result.train_seconds,
            "final_loss": result.history[-1]["loss"] if result.history else None,
            "by_distance": scores}
