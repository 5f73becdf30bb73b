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

# sacreBLEU's three warnings for hypotheses that end in " ." (it checks BLEU's input for text
# that looks tokenized): "That's 100 lines that end in a tokenized period ('.')", "It looks like
# you forgot to detokenize your test data, ...", "If you insist your data is detokenized, ...
# suppress this message with the `force` parameter."
TOKENIZED_WARNING = "forgot to detokenize"
FORCE_HINT = "`force` parameter"  # a Python argument a CLI user cannot pass: said our way
TOKENIZED_EXPLANATION = (
    "attnlab: this is expected on the built-in corpus, whose sentences are written with a "
    "space before punctuation ('a flag is new .': the corpus's own spelling, not a "
    "tokenization step), and its BLEU stays comparable between attnlab runs. On your own data "
    "it means hypotheses and references look tokenized: detokenize both for BLEU comparable "
    "with published sacreBLEU scores. (Shown once per process.)")


class _OncePerMessage(logging.Filter):
    """sacreBLEU warns about tokenized input at every corpus_score call (so at every validation
    and every bucket); let each distinct message through once per process, explain the
    tokenized-input warning once (what it means for our corpus), and drop its hint about
    sacreBLEU's `force` argument, which attnlab's users cannot pass."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message in self.seen or FORCE_HINT in message:
            return False
        self.seen.add(message)
        if TOKENIZED_WARNING in message:
            record.msg, record.args = f"{message}\n{TOKENIZED_EXPLANATION}", None
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
