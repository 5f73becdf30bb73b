"""Checks every data split passes before training starts (shared by all training tasks).

A split that cannot give a number is an error that names the file and says what to do: an
empty file, or a held-out token stream too short to score a single prediction (a language
model's validation loss was reported as 0.000, perplexity 1.0, when nothing had been scored).
A split that gives a number too noisy to mean much is a warning with the counts. The
thresholds, chosen for this library (not taken from a paper):

- `MIN_VALID_EXAMPLES` = 100 validation pairs / rows: below it one example moves accuracy or
  BLEU by a point or more.
- `MIN_VALID_TOKENS` = 1000 held-out tokens for the lm / mlm tasks: below it the validation
  loss rests on fewer than a thousand predictions.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from torch import Tensor

from attnlab.errors import DataError

log = logging.getLogger(__name__)

MIN_VALID_EXAMPLES = 100
MIN_VALID_TOKENS = 1000


def require_content(path: str | Path, lines: list[str], fix: str) -> None:
    """DataError "PATH is empty" when a file holds nothing but blank lines; `fix` says what
    the file should hold."""
    if not any(line.strip() for line in lines):
        kind = "holds only blank lines" if lines else "is empty"
        raise DataError(f"{path} {kind} (the file holds no text); {fix}")


def require_splits(data: str, counts: Mapping[str, int],
                   names: Sequence[str] = ("train", "valid", "test")) -> None:
    """DataError naming `data` and the first of `names` with no examples (`counts`: examples
    per split; a split not there counts as empty)."""
    for name in names:
        if counts.get(name, 0) == 0:
            raise DataError(f"{data}: the {name} split is empty")


def warn_small_split(where: str, count: int, unit: str, minimum: int, fix: str) -> None:
    """A warning (not an error) when a validation split holds fewer than `minimum` `unit`."""
    if count < minimum:
        log.warning("%s: only %d %s of validation data (fewer than %d): its scores are noisy; "
                    "%s", where, count, unit, minimum, fix)


def split_held_out(stream: Tensor, valid_fraction: float, where: str, *, block_size: int,
                   train_needed: int, valid_needed: int = 2) -> tuple[Tensor, Tensor]:
    """(train, held out): the last `valid_fraction` of a (N,) token stream held out.

    The held-out part must hold `valid_needed` tokens (2: one next-token prediction) and the
    training part `train_needed` (one training window); otherwise a DataError with the counts
    and what to change. A held-out part shorter than one block, or than MIN_VALID_TOKENS, is a
    warning."""
    total = stream.numel()
    split = int(total * (1 - valid_fraction))
    held = total - split
    more = "use more text or a larger --valid-fraction"
    if split < train_needed:
        raise DataError(
            f"{where}: the training part holds {split} tokens ({total} in the text, {held} held "
            f"out), fewer than --block-size {block_size} needs ({train_needed}); use more text "
            f"or a smaller --block-size (or a smaller --valid-fraction)")
    if held < valid_needed:
        raise DataError(
            f"{where}: the text has {total} tokens and --valid-fraction {valid_fraction} holds "
            f"out {held}, fewer than the {valid_needed} needed to score one prediction; {more}")
    if held < min(block_size + 1, MIN_VALID_TOKENS):
        log.warning("%s: the held-out part holds %d tokens, less than one --block-size %d "
                    "window: the validation loss is measured on %d predictions; %s or a "
                    "smaller --block-size", where, held, block_size, held - 1, more)
    else:
        warn_small_split(where, held, "held-out tokens", MIN_VALID_TOKENS, more)
    return stream[:split], stream[split:]
