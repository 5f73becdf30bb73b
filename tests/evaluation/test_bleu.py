"""Our BLEU / chrF wrappers are sacreBLEU's numbers, with its signature."""

from __future__ import annotations

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
