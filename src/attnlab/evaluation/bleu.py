"""Corpus BLEU (Papineni et al., 2002) and chrF (Popovic, 2015) computed by sacreBLEU (Post,
2018), never by hand: scores come with sacreBLEU's signature so they can be compared.

BLEU is a corpus statistic: sentence scores are not averaged. Buckets by source length are
separate corpus BLEUs over the sentences whose source falls in the bucket.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from sacrebleu.metrics import BLEU, CHRF


class _OncePerMessage(logging.Filter):
    """sacreBLEU warns about tokenized input at every corpus_score call (so at every validation
    and every bucket); let each distinct message through once per process."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message in self.seen:
            return False
        self.seen.add(message)
        return True


_sacrebleu_log = logging.getLogger("sacrebleu")
if not any(isinstance(f, _OncePerMessage) for f in _sacrebleu_log.filters):
    _sacrebleu_log.addFilter(_OncePerMessage())

# (label, lowest, highest) source lengths in whitespace tokens, inclusive.
LENGTH_BUCKETS = (("1-10", 1, 10), ("11-20", 11, 20), ("21-30", 21, 30), ("31+", 31, 10**9))


@dataclass(frozen=True)
class TranslationScores:
    bleu: float
    chrf: float
    bleu_signature: str
    chrf_signature: str
    sentences: int

    def as_dict(self) -> dict[str, float | str | int]:
        return asdict(self)


def check_lengths(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    if len(hypotheses) != len(references):
        raise ValueError(
            f"need one hypothesis per reference, got {len(hypotheses)} and {len(references)}"
        )
    if not references:
        raise ValueError("cannot score an empty corpus")


def score_corpus(hypotheses: Sequence[str], references: Sequence[str]) -> TranslationScores:
    """Corpus BLEU and chrF of detokenized hypotheses against one reference each."""
    check_lengths(hypotheses, references)
    bleu, chrf = BLEU(), CHRF()
    refs = [list(references)]
    return TranslationScores(
        bleu=bleu.corpus_score(list(hypotheses), refs).score,
        chrf=chrf.corpus_score(list(hypotheses), refs).score,
        bleu_signature=str(bleu.get_signature()),
        chrf_signature=str(chrf.get_signature()),
        sentences=len(references),
    )


def bucket_bleu(
    sources: Sequence[str], hypotheses: Sequence[str], references: Sequence[str]
) -> dict[str, dict[str, float | int]]:
    """Corpus BLEU per source-length bucket: {label: {"bleu": .., "sentences": ..}}."""
    check_lengths(hypotheses, references)
    if len(sources) != len(references):
        raise ValueError(f"need one source per reference, got {len(sources)}")
    result: dict[str, dict[str, float | int]] = {}
    for label, low, high in LENGTH_BUCKETS:
        rows = [i for i, s in enumerate(sources) if low <= len(s.split()) <= high]
        if rows:
            score = BLEU().corpus_score([hypotheses[i] for i in rows],
                                        [[references[i] for i in rows]]).score
            result[label] = {"bleu": score, "sentences": len(rows)}
    return result
