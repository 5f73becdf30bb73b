"""`attnlab prepare lm | translate` end to end on tiny files, then training from the prepared
folder: the same losses, step for step, as training on the original files (streaming from the
memmaps changes nothing), and bad input refused in one line naming the flag."""

from __future__ import annotations

import argparse
import json

import pytest

from attnlab.cli import prepare
from attnlab.cli.main import main
from attnlab.data.corpus import generate_corpus
from attnlab.errors import DataError, FolderError, MissingFileError
from attnlab.tasks.language_model import LanguageModelTask, LMSettings
from attnlab.tasks.translation import TranslationSettings, TranslationTask
from attnlab.training.run import run_task
from attnlab.training.settings import SettingError


def prepare_cli(argv):
    parser = argparse.ArgumentParser(prog="attnlab prepare")
    prepare.add_arguments(parser)
    return prepare.run(parser.parse_args([*argv, "--no-progress"]))


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    corpus = generate_corpus(seed=0, train_size=300, valid_size=8, test_size=4)
    folder = tmp_path_factory.mktemp("corpus")
    for split in ("train", "valid", "test"):
        for side, lang in ((0, "en"), (1, "de")):
            (folder / f"{split}.{lang}").write_text(
                "".join(pair[side] + "\n" for pair in corpus[split]), encoding="utf-8")
    return folder


def losses(task):
    outcome = run_task(task, progress=False)
    return [h["loss"] for h in outcome.result.history], outcome.metrics


def test_prepare_lm_then_train_gives_the_losses_of_the_text_file(text_file, tmp_path, capsys):
    out = tmp_path / "prepared"
    assert prepare_cli(["lm", "--text", str(text_file), "--out", str(out),
                        "--vocab-size", "300"]) == 0
    assert capsys.readouterr().out.startswith(f"prepared {out}: 330 lines, ")
    meta = json.loads((out / "prepared.json").read_text())
    assert meta["kind"] == "text" and meta["dtype"] == "uint16"
    assert meta["tokenizer"] == {"kind": "bpe", "vocab_size": 300, "requested_vocab_size": 300}
    values = dict(vocab_size=300, block_size=32, batch_size=8, max_steps=3, warmup_steps=10,
                  save_every=0, seed=0)
    plain, _ = losses(LanguageModelTask(LMSettings(text=str(text_file), out=str(tmp_path / "a"),
                                                   **values)))
    streamed, metrics = losses(LanguageModelTask(LMSettings(text=str(out),
                                                            out=str(tmp_path / "b"), **values)))
    assert len(plain) == 3 and streamed == plain
    assert metrics["train_stream_tokens"] + metrics["valid_stream_tokens"] == (
        meta["shards"]["text"]["tokens"])
    assert main(["train", "lm", "--text", str(out), "--out", str(tmp_path / "c"),
                 "--preset", "gpt2-tiny", "--block-size", "32", "--max-steps", "3"]) == 0


def test_prepare_translate_then_train_gives_the_losses_of_the_files(corpus_dir, tmp_path):
    out = tmp_path / "prepared"
    assert prepare_cli(["translate", "--data", str(corpus_dir), "--src-lang", "en",
                        "--tgt-lang", "de", "--out", str(out)]) == 0
    meta = json.loads((out / "prepared.json").read_text())
    assert meta["shards"]["train.src"]["sequences"] == 300
    assert meta["auto"]["vocab_size"]["value"] == 2000
    values = dict(preset="transformer-tiny", max_steps=3, max_tokens=300, evaluations=0,
                  keep="last", eval_sentences=5, beam_size=1, save_every=0)
    plain, expected = losses(TranslationTask(TranslationSettings(
        data=str(corpus_dir), src_lang="en", tgt_lang="de", out=str(tmp_path / "a"), **values)))
    streamed, metrics = losses(TranslationTask(TranslationSettings(
        data=str(out), out=str(tmp_path / "b"), **values)))
    assert len(plain) == 3 and streamed == plain
    for key in ("max_len", "train_pairs_over_max_len", "vocab_size", "bleu", "baselines"):
        assert metrics[key] == expected[key], key
    with pytest.raises(SettingError, match="vocab_size must be 2000 or left out"):
        run_task(TranslationTask(TranslationSettings(
            data=str(out), out=str(tmp_path / "c"), vocab_size=1000, **values)), progress=False)


def test_bad_input_names_the_flag(text_file, corpus_dir, tmp_path):
    with pytest.raises(MissingFileError, match="--text .*missing.txt: file not found"):
        prepare_cli(["lm", "--text", str(tmp_path / "missing.txt"), "--out", str(tmp_path)])
    with pytest.raises(SettingError, match="vocab_size"):
        prepare_cli(["lm", "--text", str(text_file), "--out", str(tmp_path / "p"),
                     "--vocab-size", "0"])
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(FolderError, match="--out .*full already holds x"):
        prepare_cli(["lm", "--text", str(text_file), "--out", str(tmp_path / "full")])
    with pytest.raises(DataError, match="--src-lang and --tgt-lang are required"):
        prepare_cli(["translate", "--data", str(corpus_dir), "--out", str(tmp_path / "t")])
    (tmp_path / "bad").mkdir()
    for split, lines in (("train", 3), ("valid", 2)):
        (tmp_path / "bad" / f"{split}.en").write_text("a b\n" * lines)
        (tmp_path / "bad" / f"{split}.de").write_text("c d\n" * 2)
    with pytest.raises(DataError, match="train.en has 3 lines but .*train.de has 2"):
        prepare_cli(["translate", "--data", str(tmp_path / "bad"), "--src-lang", "en",
                     "--tgt-lang", "de", "--out", str(tmp_path / "t")])
    assert not (tmp_path / "t").exists()


def test_prepare_translate_reads_tsv_and_keeps_held_out_splits_as_text(corpus_dir, tmp_path):
    data = tmp_path / "tsv"
    data.mkdir()
    for split in ("train", "valid"):
        src = (corpus_dir / f"{split}.en").read_text().splitlines()
        tgt = (corpus_dir / f"{split}.de").read_text().splitlines()
        rows = zip(src, tgt, strict=True)
        (data / f"{split}.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in rows))
    out = tmp_path / "prepared"
    assert prepare_cli(["translate", "--data", str(data), "--tsv", "--vocab-size", "500",
                        "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "prepared.json", "tokenizer.json", "train.src.ids.bin", "train.src.offsets.bin",
        "train.tgt.ids.bin", "train.tgt.offsets.bin", "valid.src.txt", "valid.tgt.txt"]
    task = TranslationTask(TranslationSettings(data=str(out), out=str(tmp_path / "run")))
    task.load_data()
    assert task.corpus.split("valid")[0][0] == (corpus_dir / "valid.en").read_text().split(
        "\n")[0]
    assert task.train_size() == 300 and "test" not in task.corpus.pairs
