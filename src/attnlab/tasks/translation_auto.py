"""The `auto` choices of a translation run: model preset, BPE vocabulary size and length cap,
from the corpus, the budget and the device. Each rule is a small pure function that returns
its choice and the reason, printed at the start of the run and kept in metrics.json; any of
them is overridden by giving the setting (--preset, --vocab-size, --max-len).

Why these rules (docs/own-corpus.md has the measurements):

- Preset. What limits a short run is the number of optimizer steps it gets, not capacity: on 2
  CPU cores a 10-minute run makes ~3,000 steps of transformer-mini and ~1,000 of
  transformer-small, and the small model is still far from converged. So a CPU run with a
  budget of up to an hour trains transformer-mini (1 encoder + 2 decoder layers, d=128,
  pre-norm: the size measured best for minutes of CPU, docs/translation.md). A longer CPU run,
  or any GPU run, on a corpus of at least 20,000 pairs has the steps for transformer-small;
  a GPU run on a million pairs or more with no budget under a day, for transformer-base (the
  paper's `wmt14-en-de-base` recipe is the faithful one). Both switched to pre-norm
  (PRE_NORM).
- Vocabulary. Small corpora want small BPE vocabularies (Sennrich and Zhang 2019, "Revisiting
  low-resource neural machine translation"; Ding, Renduchintala and Duh 2019, "A call for
  prudent choice of subword merge operations": 0.5k-8k merges below ~1M words): about three
  times the square root of the training words, rounded to thousands, within [2,000, 32,000];
  ~4,000 for 30k Bible verses, 32,000 for WMT-sized corpora (the paper used 37,000).
- Length cap. The 99.5th percentile of the training pairs' subword lengths (the longer side),
  rounded up to a multiple of 8: a few outliers (a whole chapter on one line, a misaligned
  pair) no longer set the padding of every batch; the pairs over it are dropped from training
  and counted in the log and metrics.json, never truncated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

AUTO = "auto"
CPU_SMALL_BUDGET = 3600.0  # seconds: up to this a CPU run gets transformer-mini
SMALL_CORPUS = 20_000  # pairs: below this, the smallest model whatever the budget
LARGE_CORPUS = 1_000_000  # pairs: from this, transformer-base on a GPU with a day's budget
LENGTH_PERCENTILE = 99.5


@dataclass(frozen=True)
class Choice:
    value: object
    reason: str
    # Model config changes that come with a preset choice (e.g. pre-norm); --set wins.
    overrides: dict = field(default_factory=dict)


# A budgeted run's learning rate peaks high (training/schedule.py warmup_linear_decay): the
# pre-norm block takes it, the paper's post-norm does not (measured on es-en Bible verses,
# transformer-small, 300 steps: valid loss 5.19 pre-norm, 6.46 post-norm at the same peak,
# 5.91 post-norm at a peak 3.6x lower). So an auto-chosen preset is always pre-norm.
PRE_NORM = {"norm_first": True}


def choose_preset(train_pairs: int, time_budget: float | None, device_type: str) -> Choice:
    """The model for `train_pairs` training pairs, a budget of `time_budget` seconds (None: no
    limit but the step count) on a "cpu" or "cuda" device."""
    budget = "no time budget" if time_budget is None else f"a {time_budget:.0f}s budget"
    if device_type == "cpu":
        if (time_budget is not None and time_budget <= CPU_SMALL_BUDGET) or (
                train_pairs < SMALL_CORPUS):
            return Choice("transformer-mini", f"CPU, {budget}, {train_pairs:,} pairs: the "
                                              "most optimizer steps for the time")
        return Choice("transformer-small", f"CPU, {budget}, {train_pairs:,} pairs; pre-norm",
                      PRE_NORM)
    if train_pairs >= LARGE_CORPUS and (time_budget is None or time_budget >= 86_400):
        return Choice("transformer-base", f"GPU, {budget}, {train_pairs:,} pairs; pre-norm",
                      PRE_NORM)
    if train_pairs < SMALL_CORPUS:
        return Choice("transformer-mini", f"GPU, {train_pairs:,} pairs: a small corpus")
    return Choice("transformer-small", f"GPU, {budget}, {train_pairs:,} pairs; pre-norm",
                  PRE_NORM)


def choose_vocab_size(train_words: int) -> Choice:
    """Joint BPE size for a training corpus of `train_words` words (both sides)."""
    size = round(3 * math.sqrt(max(train_words, 1)) / 1000) * 1000
    size = min(32_000, max(2_000, size))
    return Choice(size, f"{train_words:,} training words (3 x sqrt, in [2,000, 32,000])")


def choose_max_len(lengths: Sequence[int]) -> Choice:
    """Length cap from the longer side's subword count of each training pair."""
    if not lengths:
        return Choice(128, "no training pairs")
    ordered = sorted(lengths)
    index = min(len(ordered) - 1, math.ceil(LENGTH_PERCENTILE / 100 * len(ordered)) - 1)
    cap = max(8, math.ceil(ordered[index] / 8) * 8)
    dropped = sum(1 for n in lengths if n > cap)
    return Choice(cap, f"{LENGTH_PERCENTILE}th percentile of training lengths; drops "
                       f"{dropped:,} of {len(lengths):,} pairs")
