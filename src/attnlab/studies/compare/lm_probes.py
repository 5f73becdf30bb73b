"""Synthetic probes that separate attention from a fixed-size recurrent state, posed as
next-token language modelling: every example is one token sequence, and the loss and the score
count only its answer positions (the labels are -100 elsewhere), so any decoder-only LM
(`model(input_ids, labels=)`) trains on them unchanged.

- mqar, multi-query associative recall (Arora et al. 2023, "Zoology: Measuring and Improving
  Recall in Efficient Language Models", sec. 3): N key-value pairs, then every key queried
  once in a random order, each followed by its value; the answers are the queried values
  (predicted from the query key). Size: N pairs, a sequence of 4N tokens. Zoology finds that
  gated convolutions and recurrences need a state growing with N where attention does not.
- copy, induction / copying at a distance (Olsson et al. 2022, "In-context Learning and
  Induction Heads"): d - 1 random symbols, a separator, then the same symbols again; the
  answers are the second copy, each d positions after its first occurrence. Size: d.
- selective, selective copying (Gu & Dao 2023, "Mamba", sec. 3.1 and Fig. 2): `tokens` random
  symbols scattered at random positions of a region of L noise tokens, a separator, then the
  symbols in their order; the answers are that ordered list. Size: L, the region the symbols
  are spread over (the model must skip the noise by content, not by position).

Scoring is teacher-forced, as in Zoology: the share of answer positions whose argmax
prediction is right (`accuracy`), and the share of examples with every answer right (`exact`).
Each architecture is trained for the same wall-clock time on a seeded mix of all sizes (one
size per batch, so a batch has no padding), then scored at every size on held-out examples.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from attnlab.training.trainer import Trainer, TrainerConfig

PROBES = ("mqar", "copy", "selective")
SEPARATOR, NOISE, FIRST_SYMBOL = 0, 1, 2
IGNORE = -100
SIZE_NAMES = {"mqar": "key-value pairs", "copy": "copy distance (tokens)",
              "selective": "noise region (tokens)"}


@dataclass(frozen=True)
class ProbeSpec:
    """The vocabulary (a separator, a noise token, then `symbols` symbols; mqar's keys are the
    first half of the symbols, its values the second half) and selective copying's count."""

    symbols: int = 64
    selective_tokens: int = 8

    def __post_init__(self) -> None:
        if self.symbols < 4 or self.symbols % 2:
            raise ValueError(f"symbols must be an even integer >= 4, got {self.symbols}")
        if self.selective_tokens < 1:
            raise ValueError(f"selective_tokens must be >= 1, got {self.selective_tokens}")

    @property
    def vocab_size(self) -> int:
        return FIRST_SYMBOL + self.symbols


def check_size(probe: str, size: int, spec: ProbeSpec) -> None:
    """ValueError naming the probe, its size and the accepted range."""
    if probe == "mqar":
        low, high = 1, spec.symbols // 2
    elif probe == "copy":
        low, high = 2, None
    elif probe == "selective":
        low, high = spec.selective_tokens, None
    else:
        raise ValueError(f"probe must be one of {PROBES}, got {probe!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < low or (
            high is not None and size > high):
        bound = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{probe} size ({SIZE_NAMES[probe]}) must be an integer in {bound}, "
                         f"got {size!r}")


def make_example(probe: str, size: int, rng: random.Random,
                 spec: ProbeSpec) -> tuple[list[int], list[int]]:
    """One (token ids, answer positions) example of `probe` at `size`."""
    check_size(probe, size, spec)
    symbol = [FIRST_SYMBOL + i for i in range(spec.symbols)]
    if probe == "mqar":
        half = spec.symbols // 2
        keys = rng.sample(symbol[:half], size)
        values = [rng.choice(symbol[half:]) for _ in keys]
        ids = [t for pair in zip(keys, values, strict=True) for t in pair]
        answers = []
        for i in rng.sample(range(size), size):  # every key queried once, in a random order
            ids += [keys[i], values[i]]
            answers.append(len(ids) - 1)
        return ids, answers
    if probe == "copy":
        prefix = [rng.choice(symbol) for _ in range(size - 1)]
        ids = [*prefix, SEPARATOR, *prefix]
        return ids, list(range(size, len(ids)))
    data = [rng.choice(symbol) for _ in range(spec.selective_tokens)]
    region = [NOISE] * size
    for position, token in zip(sorted(rng.sample(range(size), len(data))), data, strict=True):
        region[position] = token
    ids = [*region, SEPARATOR, *data]
    return ids, list(range(size + 1, len(ids)))


def sequence_length(probe: str, size: int, spec: ProbeSpec) -> int:
    """Tokens of one example at `size` (a model's max_seq_len must cover the largest)."""
    return len(make_example(probe, size, random.Random(0), spec)[0])


def make_batch(probe: str, size: int, rng: random.Random, spec: ProbeSpec,
               batch_size: int) -> dict[str, Tensor]:
    """input_ids (B, T) and labels (B, T): the ids at answer positions, -100 elsewhere (the
    model's loss shifts them: position t - 1 predicts the answer at t)."""
    examples = [make_example(probe, size, rng, spec) for _ in range(batch_size)]
    ids = torch.tensor([ids for ids, _ in examples])  # (B, T): one size, one length
    labels = torch.full_like(ids, IGNORE)
    for row, (_, answers) in enumerate(examples):
        labels[row, answers] = ids[row, answers]
    return {"input_ids": ids, "labels": labels}


class ProbeBatches:
    """Endless seeded batches, one size each, drawn from `sizes` (the Trainer's batch-source
    protocol: `next`, `state_dict`, `load_state_dict`)."""

    def __init__(self, probe: str, sizes: list[int], batch_size: int, seed: int,
                 spec: ProbeSpec) -> None:
        for size in sizes:
            check_size(probe, size, spec)
        self.probe, self.sizes, self.batch_size, self.spec = probe, sizes, batch_size, spec
        self.seed, self.index = seed, 0

    def next(self) -> dict[str, Tensor]:
        rng = random.Random(self.seed * 1_000_003 + self.index)
        self.index += 1
        return make_batch(self.probe, rng.choice(self.sizes), rng, self.spec, self.batch_size)

    def state_dict(self) -> dict[str, Any]:
        return {"index": self.index}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.index = int(state["index"])


def answer_loss(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, int]:
    """The next-token loss on the answer positions, and how many there are."""
    return model(batch["input_ids"], labels=batch["labels"]).loss, int(
        (batch["labels"] != IGNORE).sum())


@torch.no_grad()
def score(model: nn.Module, probe: str, size: int, spec: ProbeSpec, *, examples: int = 128,
          batch_size: int = 64, seed: int = 12345) -> dict[str, float]:
    """Teacher-forced accuracy on the answer positions and the share of examples with every
    answer right, on `examples` held-out examples (their own seed) at `size`."""
    rng = random.Random(seed * 7919 + size)
    model.eval()
    right = answered = exact = 0
    for first in range(0, examples, batch_size):
        batch = make_batch(probe, size, rng, spec, min(batch_size, examples - first))
        logits = model(batch["input_ids"]).logits  # (B, T, V)
        predicted = logits[:, :-1].argmax(-1)  # (B, T - 1): position t predicts t + 1
        labels = batch["labels"][:, 1:]  # (B, T - 1)
        asked = labels != IGNORE
        hits = (predicted == labels) & asked
        right += int(hits.sum())
        answered += int(asked.sum())
        exact += int((hits.sum(-1) == asked.sum(-1)).sum())
    model.train()
    return {"accuracy": right / answered, "exact": exact / examples}


def run_probe(build: Callable[[int], nn.Module], probe: str, sizes: list[int], *,
              seconds: float | None, max_steps: int | None = None, seed: int = 0,
              spec: ProbeSpec | None = None, lr: float = 3e-3, batch_size: int = 32,
              warmup_steps: int = 50, examples: int = 128) -> dict[str, Any]:
    """Train `build(vocab_size)` on `probe` over a mix of `sizes` for `seconds` of training
    (or `max_steps` steps: exact, for tests), AdamW with linear warmup then a constant rate,
    then score every size."""
    if seconds is None and max_steps is None:
        raise ValueError("run_probe needs seconds or max_steps")
    spec = spec or ProbeSpec()
    torch.manual_seed(seed)
    model = build(spec.vocab_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0, weight_decay=0.0)
    batches = ProbeBatches(probe, sizes, batch_size, seed, spec)
    trainer = Trainer(model, optimizer, lambda step: lr * min(1.0, (step + 1) / warmup_steps),
                      batches, answer_loss,
                      TrainerConfig(max_steps=max_steps or 10**9, time_budget=seconds,
                                    clip_norm=1.0, progress=False, log_every=10))
    result = trainer.fit()
    scores = {str(size): score(model, probe, size, spec, examples=examples, seed=seed + 1)
              for size in sizes}
    return {"probe": probe, "seed": seed, "steps": result.step,
            "train_seconds": round(result.train_seconds, 2),
            "final_loss": result.history[-1]["loss"] if result.history else None,
            "by_size": scores}
