"""The trivial baselines are sacreBLEU's own numbers for copying the source and for repeating
the most frequent training target; the warning names both scores and what to try."""

from __future__ import annotations

import pytest
import sacrebleu

from attnlab.evaluation import baseline_warning, beats_copy, translation_baselines
from attnlab.evaluation.baselines import most_frequent

SOURCES = ["Der Zug fährt um 8 Uhr nach Berlin.", "Maria kauft drei Äpfel.",
           "Das Wetter ist heute schön.", "Paris ist die Hauptstadt von Frankreich."]
REFERENCES = ["The train leaves for Berlin at 8 o'clock.", "Maria buys three apples.",
              "The weather is nice today.", "Paris is the capital of France."]
TRAIN_TARGETS = ["Thank you.", "The weather is nice.", "Thank you.", "The weather is nice.",
                 "The weather is nice.", "Thank you.", "Good morning.", "The weather is nice."]


def written_and_read(tmp_path, name: str, lines: list[str]) -> list[str]:
    """The lines through a UTF-8 file, as a user's corpus reaches the baselines."""
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path.read_text(encoding="utf-8").splitlines()


@pytest.fixture
def corpus(tmp_path):
    return (written_and_read(tmp_path, "test.de", SOURCES),
            written_and_read(tmp_path, "test.en", REFERENCES),
            written_and_read(tmp_path, "train.en", TRAIN_TARGETS))


def test_scores_are_sacrebleu_s(corpus):
    sources, references, train_targets = corpus
    baselines = translation_baselines(sources, references, train_targets)
    copy, frequent = baselines["copy_source"], baselines["most_frequent_target"]
    assert copy["bleu"] == pytest.approx(sacrebleu.corpus_bleu(sources, [references]).score)
    assert copy["chrf"] == pytest.approx(sacrebleu.corpus_chrf(sources, [references]).score)
    constant = ["The weather is nice."] * len(references)
    assert frequent["hypothesis"] == "The weather is nice."
    assert frequent["bleu"] == pytest.approx(sacrebleu.corpus_bleu(constant, [references]).score)
    assert frequent["chrf"] == pytest.approx(sacrebleu.corpus_chrf(constant, [references]).score)
    assert 0 < copy["bleu"] < 100 and 0 < frequent["chrf"] < 100


def test_copying_identical_text_scores_100(corpus):
    _, references, train_targets = corpus
    copy = translation_baselines(references, references, train_targets)["copy_source"]
    assert copy["bleu"] == pytest.approx(100.0) and copy["chrf"] == pytest.approx(100.0)


def test_most_frequent_sentence_ties_go_to_the_first_seen():
    assert most_frequent(["b", "a", "a", "b", "c"]) == "b"  # a and b twice: b came first
    assert most_frequent(["c", "a", "b", "a"]) == "a"
    assert most_frequent(["x"]) == "x"
    assert most_frequent(["a", "a ", "a "]) == "a "  # exact strings, not stripped
    with pytest.raises(ValueError, match="at least one training target"):
        most_frequent([])


def test_mismatched_lengths_are_refused(corpus):
    sources, references, train_targets = corpus
    with pytest.raises(ValueError, match="one hypothesis per reference"):
        translation_baselines(sources[:2], references, train_targets)


def test_beats_copy_and_the_warning():
    baselines = {"copy_source": {"bleu": 4.5, "chrf": 30.0, "hypothesis": "-"},
                 "most_frequent_target": {"bleu": 1.25, "chrf": 10.0, "hypothesis": "Thank you."}}
    assert beats_copy(4.6, baselines) and not beats_copy(4.5, baselines)
    assert not beats_copy(5.0, baselines, margin=1.0)
    warning = baseline_warning(3.0, baselines)
    assert warning is not None and "\n" not in warning
    assert "BLEU 3.00 does not beat copying the source sentence (BLEU 4.50)" in warning
    assert "--time-budget" in warning and "swapped or misaligned" in warning
    assert baseline_warning(20.0, baselines) is None
    baselines["copy_source"]["bleu"] = 0.5
    warning = baseline_warning(1.0, baselines)
    assert warning is not None
    assert "most frequent training target 'Thank you.' (BLEU 1.25)" in warning
