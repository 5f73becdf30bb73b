"""Trivial translation baselines a trained model must beat, scored like the model (corpus BLEU,
Papineni et al. 2002, and chrF, Popovic 2015, by sacreBLEU, Post 2018, through `score_corpus`).

- "copy_source": the hypothesis is the source sentence itself. Between languages that share
  names, numbers and punctuation this scores well above zero, so a model under it has learnt
  nothing useful (or its source and target files are swapped or misaligned).
- "most_frequent_target": every hypothesis is the most frequent sentence among the TRAINING
  targets (exact string match; ties go to the sentence that occurs first), the best a model
  that ignores its input can do with one fixed output.

    baselines = translation_baselines(test_sources, test_references, train_targets)
    if (warning := baseline_warning(model_bleu, baselines)): log.warning(warning)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from attnlab.evaluation.bleu import score_corpus

COPY_SOURCE = "copy_source"
MOST_FREQUENT_TARGET = "most_frequent_target"
COPY_HYPOTHESIS = "<the source sentence>"  # what "hypothesis" says for the copy baseline


def most_frequent(sentences: Sequence[str]) -> str:
    """The sentence occurring most often in `sentences` (exact match); among equally frequent
    ones, the one that occurs first."""
    if not sentences:
        raise ValueError("need at least one training target to find the most frequent one")
    counts = Counter(sentences)
    top = max(counts.values())
    return next(s for s in sentences if counts[s] == top)


def translation_baselines(sources: Sequence[str], references: Sequence[str],
                          train_targets: Sequence[str]) -> dict[str, dict[str, float | str]]:
    """{"copy_source": {...}, "most_frequent_target": {...}}, each {"bleu", "chrf",
    "hypothesis"}: corpus scores against `references` (one per source) of copying each source,
    and of answering every source with the most frequent of `train_targets`
    ("hypothesis" is that sentence; for the copy, COPY_HYPOTHESIS)."""
    frequent = most_frequent(train_targets)
    copy = score_corpus(sources, references)
    constant = score_corpus([frequent] * len(references), references)
    return {
        COPY_SOURCE: {"bleu": copy.bleu, "chrf": copy.chrf, "hypothesis": COPY_HYPOTHESIS},
        MOST_FREQUENT_TARGET: {"bleu": constant.bleu, "chrf": constant.chrf,
                               "hypothesis": frequent},
    }


def beats_copy(model_bleu: float, baselines: dict[str, dict[str, float | str]],
               margin: float = 0.0) -> bool:
    """True when `model_bleu` is above the copy-the-source BLEU by more than `margin` points."""
    return model_bleu > float(baselines[COPY_SOURCE]["bleu"]) + margin


def baseline_warning(bleu: float, baselines: dict[str, dict[str, float | str]],
                     margin: float = 0.0) -> str | None:
    """One line when the model's BLEU does not beat a baseline (copying the source first, then
    repeating the most frequent training target), with both numbers and what to try; None
    when it beats both."""
    advice = ("train longer (a larger --time-budget) and check that the source and target "
              "files are not swapped or misaligned (line i of each a translation pair)")
    if not beats_copy(bleu, baselines, margin):
        copy = float(baselines[COPY_SOURCE]["bleu"])
        return (f"the model's BLEU {bleu:.2f} does not beat copying the source sentence "
                f"(BLEU {copy:.2f}): {advice}")
    frequent = baselines[MOST_FREQUENT_TARGET]
    if bleu <= float(frequent["bleu"]) + margin:
        sentence = str(frequent["hypothesis"])
        shown = sentence if len(sentence) <= 60 else sentence[:57] + "..."
        return (f"the model's BLEU {bleu:.2f} does not beat answering every sentence with the "
                f"most frequent training target {shown!r} (BLEU "
                f"{float(frequent['bleu']):.2f}): {advice}")
    return None
