"""Reading the user's parallel corpus: every bad file gets a message with file, line and fix."""

from __future__ import annotations

import pytest

from attnlab.data.parallel import DataError, load_corpus, read_tsv


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
