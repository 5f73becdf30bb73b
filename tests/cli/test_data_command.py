"""`attnlab data bible`: the corpus folder, what it prints, and the folders it refuses. The
corpus is a small hand-made one (the build itself is tested in tests/data/test_bible.py), except
in the last test, which runs on Debian's modules where they are installed."""

from __future__ import annotations

from pathlib import Path

import pytest

from attnlab.cli import data as data_command
from attnlab.cli.main import main
from attnlab.data.bible import PAIRS, BibleCorpus
from attnlab.data.parallel import load_corpus
from attnlab.data.sword import SWORD_ROOT, is_installed


def small_corpus(name: str, root: Path) -> BibleCorpus:
    _, _, src, tgt, _ = PAIRS[name]
    splits = {split: [(f"{src} {split} {i}", f"{tgt} {split} {i}") for i in range(count)]
              for split, count in (("train", 5), ("valid", 2), ("test", 3))}
    return BibleCorpus(name, src, tgt, splits, ["Num.12"])


@pytest.fixture
def built(monkeypatch):
    """The command with small_corpus in place of the build; records each build's arguments."""
    calls = []

    def build(name, root):
        calls.append((name, root))
        return small_corpus(name, root)

    monkeypatch.setattr(data_command, "build_bible_corpus", build)
    return calls


def test_writes_the_corpus_and_prints_sizes_and_the_next_command(tmp_path, capsys, built):
    out = tmp_path / "bible es-en"
    assert main(["data", "bible", "--pair", "es-en", "--out", str(out)]) == 0
    assert built == [("es-en", SWORD_ROOT)]
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == f"wrote {out}: Reina-Valera 1909 (Spanish) -> World English Bible"
    assert "train 5, valid 2, test 3 (1 chapter(s) left out" in printed[1]
    assert printed[2] == (f"next: attnlab train translate --data '{out}' --src-lang es "
                          "--tgt-lang en --time-budget 600")  # quoted: the path has a space
    assert sorted(p.name for p in out.iterdir()) == [
        "README.txt", "test.en", "test.es", "train.en", "train.es", "valid.en", "valid.es"]
    corpus = load_corpus(out, "es", "en")  # what the printed command will read
    assert corpus.pairs["test"][2] == ("es test 2", "en test 2")


def test_a_folder_holding_files_needs_overwrite(tmp_path, capsys, built):
    out = tmp_path / "corpus"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["data", "bible", "--pair", "es-en", "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "already holds files (notes.txt)" in error
    assert "--overwrite" in error
    assert built == [] and [p.name for p in out.iterdir()] == ["notes.txt"]  # nothing built

    assert main(["data", "bible", "--pair", "es-en", "--out", str(out), "--overwrite"]) == 0
    # another pair over it: the old pair's files go, the user's file stays
    assert main(["data", "bible", "--pair", "kjv-web", "--out", str(out), "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "README.txt", "notes.txt", "test.kjv", "test.web", "train.kjv", "train.web",
        "valid.kjv", "valid.web"]
    assert (out / "notes.txt").read_text() == "mine"
    assert "--src-lang kjv --tgt-lang web" in capsys.readouterr().out


def test_an_empty_folder_is_used_and_a_file_is_refused(tmp_path, capsys, built):
    (tmp_path / "empty").mkdir()
    assert main(["data", "bible", "--pair", "kjv-web", "--out", str(tmp_path / "empty")]) == 0
    (tmp_path / "file").write_text("x")
    assert main(["data", "bible", "--pair", "kjv-web", "--out", str(tmp_path / "file"),
                 "--overwrite"]) == 2
    assert "is a file; expected a folder" in capsys.readouterr().err


def test_missing_modules_name_the_packages_and_write_nothing(tmp_path, capsys):
    out = tmp_path / "corpus"
    assert main(["data", "bible", "--pair", "es-en", "--out", str(out),
                 "--sword-root", str(tmp_path / "sword")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("attnlab data: error: SWORD module 'spaRV1909eb' is not installed")
    assert "apt-get install sword-text-web sword-text-kjv sword-text-sparv" in error
    assert not out.exists()


def test_unknown_pair_and_missing_corpus_are_one_line_errors(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["data", "bible", "--pair", "fr-en", "--out", "x"])
    assert exit_.value.code == 2 and "invalid choice: 'fr-en'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["data"])
    assert exit_.value.code == 2 and "required: CORPUS" in capsys.readouterr().err


@pytest.mark.skipif(not all(is_installed(module) for module in PAIRS["kjv-web"][:2]),
                    reason=f"sword-text-kjv / sword-text-web not installed "
                    f"under {SWORD_ROOT} (apt-get install sword-text-web sword-text-kjv)")
def test_real_modules_end_to_end(tmp_path, capsys):
    out = tmp_path / "kjv-web"
    assert main(["data", "bible", "--pair", "kjv-web", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    corpus = load_corpus(out, "kjv", "web")
    sizes = {split: len(pairs) for split, pairs in corpus.pairs.items()}
    assert f"train {sizes['train']:,}, valid {sizes['valid']:,}, test {sizes['test']:,}" in printed
    assert sizes["train"] > 25_000
    assert f"--data {out} --src-lang kjv --tgt-lang web --time-budget 600" in printed
