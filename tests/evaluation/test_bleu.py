"""Our BLEU / chrF wrappers are sacreBLEU's numbers, with its signature."""

from __future__ import annotations

import logging

import pytest
import sacrebleu

from attnlab.evaluation import bucket_bleu, score_corpus

HYPS = ["the cat sat on the mat", "a dog runs in the park today", "hello world", "it is raining"]
REFS = ["the cat sat on a mat", "the dog runs in the park", "hello world !", "it rains"]
SRCS = ["w " * 3, "w " * 12, "w " * 25, "w " * 40]


def test_matches_sacrebleu():
    scores = score_corpus(HYPS, REFS)
    assert scores.bleu == pytest.approx(sacrebleu.corpus_bleu(HYPS, [REFS]).score)
    assert scores.chrf == pytest.approx(sacrebleu.corpus_chrf(HYPS, [REFS]).score)
    assert scores.bleu_signature.startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp")
    assert scores.sentences == 4


def test_buckets_are_separate_corpus_scores():
    buckets = bucket_bleu(SRCS, HYPS, REFS)
    assert list(buckets) == ["1-10", "11-20", "21-30", "31+"]
    assert buckets["11-20"]["bleu"] == pytest.approx(
        sacrebleu.corpus_bleu([HYPS[1]], [[REFS[1]]]).score)
    assert all(b["sentences"] == 1 for b in buckets.values())


def test_errors():
    with pytest.raises(ValueError, match="one hypothesis per reference"):
        score_corpus(HYPS[:2], REFS)
    with pytest.raises(ValueError, match="empty corpus"):
        score_corpus([], [])


def test_tokenized_input_warning_is_shown_once_with_an_explanation(caplog):
    """sacreBLEU warns at every corpus_score call that lines end in ' .' (every validation,
    every bucket); the built-in corpus is written that way, so the warning comes once, says what
    it means here, and leaves out the hint about sacreBLEU's Python-only `force` argument."""
    from attnlab.evaluation import bleu

    for log_filter in logging.getLogger("sacrebleu").filters:
        if isinstance(log_filter, bleu._OncePerMessage):
            log_filter.seen.clear()  # another test may have scored tokenized text already
    tokenized = ["a flag is new ."] * 120
    with caplog.at_level(logging.WARNING, logger="sacrebleu"):
        for _ in range(3):
            score_corpus(tokenized, tokenized)
            bucket_bleu(tokenized, tokenized, tokenized)
    messages = [r.getMessage() for r in caplog.records if r.name == "sacrebleu"]
    assert len([m for m in messages if "forgot to detokenize" in m]) == 1
    assert len([m for m in messages if "tokenized period" in m]) == 1
    assert not any("`force`" in m for m in messages)
    explained = next(m for m in messages if "forgot to detokenize" in m)
    assert "expected on the built-in corpus" in explained
    assert "space before punctuation" in explained
