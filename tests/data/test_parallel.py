"""Reading the user's parallel corpus: every bad file gets a message with file, line and fix."""

from __future__ import annotations

import logging

import pytest

from attnlab.data.checks import MIN_VALID_EXAMPLES
from attnlab.data.parallel import (
    DataError,
    filter_long,
    load_corpus,
    read_tsv,
    warn_before_training,
)


def write(path, text: str | bytes):
    if isinstance(text, str):
        text = text.encode("utf-8")
    path.write_bytes(text)
    return path


def make_corpus(tmp_path, src="a b\nc d\n", tgt="x y\nz w\n"):
    for split in ("train", "valid"):
        write(tmp_path / f"{split}.de", src)
        write(tmp_path / f"{split}.en", tgt)
    return tmp_path


def test_reads_fairseq_layout(tmp_path):
    corpus = load_corpus(make_corpus(tmp_path), "de", "en")
    assert corpus.split("train") == [("a b", "x y"), ("c d", "z w")]
    assert "test" not in corpus.pairs
    with pytest.raises(DataError, match="split 'test' is missing"):
        corpus.split("test")


def test_crlf_and_bom_are_tolerated(tmp_path):
    make_corpus(tmp_path, src="\ufeffa b\r\nc d\r\n")
    assert load_corpus(tmp_path, "de", "en").split("train")[0] == ("a b", "x y")


def test_mismatched_line_counts(tmp_path):
    make_corpus(tmp_path)
    write(tmp_path / "valid.en", "only one\n")
    with pytest.raises(DataError, match=r"valid.de has 2 lines but .*valid.en has 1.*realign"):
        load_corpus(tmp_path, "de", "en")


def test_empty_lines_are_named(tmp_path):
    make_corpus(tmp_path, src="a b\n \nc\n", tgt="x\ny\n\n")
    with pytest.raises(DataError, match=r"2 pair\(s\) with an empty side at line\(s\) 2, 3"):
        load_corpus(tmp_path, "de", "en")


def test_non_utf8_gives_line_and_offset(tmp_path):
    make_corpus(tmp_path)
    write(tmp_path / "train.de", b"a b\n" + "caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"train.de:2: not valid UTF-8 \(byte offset 7.*iconv"):
        load_corpus(tmp_path, "de", "en")


def test_missing_files_and_flags(tmp_path):
    with pytest.raises(DataError, match="not a directory"):
        load_corpus(tmp_path / "nope", "de", "en")
    write(tmp_path / "train.de", "a\n")
    write(tmp_path / "train.en", "b\n")
    with pytest.raises(DataError, match="missing the valid split"):
        load_corpus(tmp_path, "de", "en")
    with pytest.raises(DataError, match="--src-lang and --tgt-lang are required"):
        load_corpus(tmp_path)
    write(tmp_path / "valid.de", "a\n")
    with pytest.raises(DataError, match="valid.en: file not found"):
        load_corpus(tmp_path, "de", "en")


def test_tsv(tmp_path):
    write(tmp_path / "train.tsv", "a b\tx y\nc\tz\n")
    write(tmp_path / "valid.tsv", "a\tx\n")
    assert load_corpus(tmp_path, tsv=True).split("train") == [("a b", "x y"), ("c", "z")]
    write(tmp_path / "bad.tsv", "a\tb\tc\n")
    with pytest.raises(DataError, match=r"bad.tsv:1: expected 2 tab-separated columns.*got 3"):
        read_tsv(tmp_path / "bad.tsv")


def snapshot(folder):
    """Every file under `folder` with its bytes: a check must change nothing on disk."""
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_an_empty_split_names_the_file(tmp_path, split):
    make_corpus(tmp_path)
    write(tmp_path / "test.de", "a b\n")
    write(tmp_path / "test.en", "x y\n")
    write(tmp_path / f"{split}.de", "")
    write(tmp_path / f"{split}.en", "")  # both sides empty: the first file is named
    before = snapshot(tmp_path)
    with pytest.raises(DataError, match=rf"{split}.de is empty \(the file holds no text\); put "
                                        rf"one sentence per line in it \(line i of {split}.de "
                                        rf"and {split}.en a translation pair\)") as error:
        load_corpus(tmp_path, "de", "en")
    # Only the test split may go: its message says how; train and valid must be filled.
    assert ("remove the test files" in str(error.value)) == (split == "test")
    assert snapshot(tmp_path) == before


def test_an_empty_side_of_a_split_is_named_before_the_line_counts(tmp_path):
    make_corpus(tmp_path)
    write(tmp_path / "valid.en", "\n\n")
    with pytest.raises(DataError, match=r"valid.en holds only blank lines"):
        load_corpus(tmp_path, "de", "en")


def test_a_split_with_one_of_its_files_is_an_error(tmp_path):
    make_corpus(tmp_path)
    write(tmp_path / "test.en", "x y\n")
    with pytest.raises(DataError, match=r"test.de: file not found, but test.en is there; a split "
                                        r"needs both files: add test.de or remove test.en"):
        load_corpus(tmp_path, "de", "en")


def test_an_empty_tsv_split_names_the_file(tmp_path):
    write(tmp_path / "train.tsv", "a\tx\n")
    write(tmp_path / "valid.tsv", "")
    with pytest.raises(DataError, match=r"valid.tsv is empty \(the file holds no text\); put one "
                                        r"`source<TAB>target` pair per line in it$"):
        load_corpus(tmp_path, tsv=True)


def test_no_test_split_and_a_small_valid_split_are_warnings(tmp_path, caplog):
    corpus = load_corpus(make_corpus(tmp_path), "de", "en")
    with caplog.at_level(logging.WARNING):
        warn_before_training(corpus, tmp_path)
    assert (f"{tmp_path}: no test split (test files absent): the final scores are computed on "
            f"the valid split (metrics.json \"split\": \"valid\")") in caplog.text
    assert (f"valid.de / {tmp_path}/valid.en: only 2 pairs of validation data (fewer than "
            f"{MIN_VALID_EXAMPLES})") in caplog.text


def test_a_split_with_no_pair_under_max_len_gives_the_numbers():
    encoded = [([1, 2, 3], [4, 5]), ([1] * 9, [2])]
    assert filter_long(encoded, 3, "d/train.src / d/train.tgt") == [([1, 2, 3], [4, 5])]
    with pytest.raises(DataError, match=r"^d/train.src / d/train.tgt: all 2 pair\(s\) are longer "
                                        r"than --max-len 2 subwords \(the shortest pair has 3\), "
                                        r"so none is left to train on; raise --max-len to at "
                                        r"least 3$"):
        filter_long(encoded, 2, "d/train.src / d/train.tgt")


def test_every_split_and_side_is_nfc_by_default(tmp_path):
    make_corpus(tmp_path, src="cafe\u0301 a\n\ufb01n b\n", tgt="x\u0301 y\nz w\n")
    write(tmp_path / "test.de", "e\u0301\n")
    write(tmp_path / "test.en", "\u212b\n")
    corpus = load_corpus(tmp_path, "de", "en")
    for split in ("train", "valid"):
        assert corpus.split(split) == [("café a", "x\u0301 y"), ("\ufb01n b", "z w")]
    assert corpus.split("test") == [("é", "\u00c5")]
    assert load_corpus(tmp_path, "de", "en", normalize="nfkc").split("train")[1] == ("fin b",
                                                                                     "z w")
    assert load_corpus(tmp_path, "de", "en", normalize="none").split("test") == [
        ("e\u0301", "\u212b")]


def test_tsv_is_normalized_too(tmp_path):
    write(tmp_path / "train.tsv", "cafe\u0301\tx\u0301\n")
    write(tmp_path / "valid.tsv", "a\tb\n")
    assert load_corpus(tmp_path, tsv=True).split("train") == [("café", "x\u0301")]


def test_a_bad_normal_form_is_a_config_error(tmp_path):
    from attnlab.errors import ConfigError

    with pytest.raises(ConfigError, match=r"normalize must be one of nfc, nfkc, none, got 'nfd'"):
        load_corpus(make_corpus(tmp_path), "de", "en", normalize="nfd")


def test_empty_lines_are_still_named_after_normalization(tmp_path):
    make_corpus(tmp_path, src="a b\n\u3000\n", tgt="x\ny\n")  # ideographic space: NFKC " "
    for form in ("nfc", "nfkc", "none"):
        with pytest.raises(DataError, match=r"1 pair\(s\) with an empty side at line\(s\) 2"):
            load_corpus(tmp_path, "de", "en", normalize=form)
