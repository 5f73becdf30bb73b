"""`attnlab train classify`: learns a separable task, resumes exactly, writes a folder
transformers loads, and names bad TSV lines."""

from __future__ import annotations

import json
import random

import pytest
import torch

from attnlab.cli.main import main
from attnlab.data.parallel import DataError
from attnlab.interop.hf_folder import from_pretrained
from attnlab.tasks.classification import ClassifySettings, train_classifier

GOOD = "great lovely excellent superb fine".split()
BAD = "awful terrible poor dreadful bad".split()
FILLER = "the movie plot actor scene was and a film".split()


def write_data(folder, n=240, seed=0):
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", n), ("valid", 60), ("test", 60)):
        lines = []
        for _ in range(count):
            label = rng.choice(["pos", "neg"])
            words = [rng.choice(FILLER) for _ in range(rng.randint(3, 8))]
            words.insert(rng.randint(0, len(words)), rng.choice(GOOD if label == "pos" else BAD))
            lines.append(" ".join(words) + "\t" + label)
        (folder / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return folder


def settings(tmp_path, out, **values):
    base = dict(data=str(write_data(tmp_path / "data")), out=str(tmp_path / out),
                vocab_size=300, batch_size=16, max_steps=80, warmup_steps=10, save_every=0,
                lr=2e-3)
    return ClassifySettings(**{**base, **values})


def test_learns_a_keyword_task_and_transformers_loads_it(tmp_path, capsys):
    s = settings(tmp_path, "run")
    assert main(["train", "classify", "--data", s.data, "--out", s.out, "--vocab-size", "300",
                 "--batch-size", "16", "--max-steps", "80", "--warmup-steps", "10",
                 "--lr", "2e-3", "--save-every", "0"]) == 0
    assert "validation accuracy" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["valid_accuracy"] >= 0.9 and metrics["test_accuracy"] >= 0.9
    assert metrics["labels"] == ["neg", "pos"]
    transformers = pytest.importorskip("transformers")
    hf = transformers.BertForSequenceClassification.from_pretrained(tmp_path / "run").eval()
    ours = from_pretrained(tmp_path / "run")
    ids = torch.randint(4, 260, (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, hf(ids).logits, atol=1e-4, rtol=1e-4)


def test_resume_equals_uninterrupted(tmp_path):
    train_classifier(settings(tmp_path, "a", max_steps=6, save_every=3))
    train_classifier(settings(tmp_path, "b", max_steps=3, save_every=3))
    train_classifier(settings(tmp_path, "b", max_steps=6, save_every=3), resume=True)
    a, b = from_pretrained(tmp_path / "a"), from_pretrained(tmp_path / "b")
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y, atol=0, rtol=0, msg=name)


def test_bad_tsv_lines_are_named(tmp_path):
    folder = write_data(tmp_path / "bad")
    (folder / "valid.tsv").write_text("fine\tpos\nno tab here\n")
    with pytest.raises(DataError, match=r"valid.tsv:2: expected `text<TAB>label`"):
        train_classifier(settings(tmp_path, "x", data=str(folder)))
    (folder / "valid.tsv").write_text("fine\tneutral\n")
    with pytest.raises(DataError, match=r"labels \['neutral'\] do not occur in train.tsv"):
        train_classifier(settings(tmp_path, "y", data=str(folder)))
    with pytest.raises(ValueError, match="preset must be an encoder"):
        ClassifySettings(data="d", preset="gpt2-tiny")


def files_under(folder):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(("name", "content", "message"), [
    ("train.tsv", "", r"bad/train.tsv is empty \(the file holds no text\); put one "
                      r"`text<TAB>label` example per line in it"),
    ("valid.tsv", "\n\n", r"bad/valid.tsv holds only blank lines"),
    ("test.tsv", "", r"bad/test.tsv is empty"),
    ("valid.tsv", "fine\tpos\nno tab here\n", r"bad/valid.tsv:2: expected `text<TAB>label`"),
    ("test.tsv", "fine\tpos\nmeh\tneutral\n",
     r"bad/test.tsv: labels \['neutral'\] do not occur in train.tsv \(its labels: \['neg', "
     r"'pos'\]\); fix or drop those rows, or add examples of them to train.tsv"),
    ("train.tsv", "good\tpos\nfine\tpos\n", r"bad/train.tsv: need at least 2 labels, got "
                                           r"\['pos'\]"),
])
def test_bad_splits_stop_the_run_before_anything_is_written(tmp_path, name, content, message):
    folder = write_data(tmp_path / "bad")
    (folder / name).write_text(content)
    before = files_under(folder)
    with pytest.raises(DataError, match=message):
        train_classifier(settings(tmp_path, "run", data=str(folder)))
    assert not (tmp_path / "run").exists()
    assert files_under(folder) == before


def test_a_small_valid_split_is_a_warning_with_the_numbers(tmp_path, caplog):
    s = settings(tmp_path, "run", max_steps=1)  # write_data: 60 validation rows
    train_classifier(s)
    assert f"{s.data}/valid.tsv: only 60 rows of validation data (fewer than 100)" in caplog.text
