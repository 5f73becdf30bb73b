"""Run folders are never overwritten by accident (issue 16): a second run into a folder that
holds one needs --resume or --overwrite; --overwrite deletes only what attnlab wrote; --resume
refuses changed settings and data, listing each difference; checkpoints carry the run id and
averaging refuses to mix runs; only a run that ends well leaves a final model; the demos have
their own folders. Each refusal leaves the folder byte for byte as it was."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

import attnlab
from attnlab.cli import demo
from attnlab.cli.main import main
from attnlab.errors import ConfigError, DataError, FolderError, MissingFileError
from attnlab.tasks.language_model import LanguageModelTask, LMSettings
from attnlab.training.checkpoint import checkpoint_run_id, list_checkpoints
from attnlab.training.run import run_task
from attnlab.training.run_folder import describe, fingerprint_differences
from attnlab.training.settings import setting


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.count("error: ") == 1
    return err


def test_a_second_run_into_a_run_folder_is_refused_and_nothing_changes(lm, snapshot, text,
                                                                       tmp_path, capsys):
    out = tmp_path / "run"
    assert main(lm(text, out)) == 0
    before = snapshot(out)
    assert main(lm(text, out)) == 2
    err = one_error_line(capsys)
    assert err.endswith(f"--out {out} already holds a run (train_settings.json, run.json, "
                        "checkpoints, config.json, metrics.json): add --resume to continue it "
                        "or --overwrite to replace it (or choose another --out)")
    assert snapshot(out) == before


def test_overwrite_replaces_the_run_whole(lm, text, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(lm(text, out, "--max-steps", "3")) == 0
    old_id = json.loads((out / "run.json").read_text())["run_id"]
    (out / ".model.safetensors.x1.tmp").write_bytes(b"half")  # a killed write's leftover
    assert main(lm(text, out, "--overwrite")) == 0
    record = json.loads((out / "run.json").read_text())
    assert record["run_id"] != old_id and record["task"] == "lm"
    steps = list_checkpoints(out / "checkpoints")
    assert [p.name for p in steps] == ["step_0000001", "step_0000002"]  # none of the old run
    assert {checkpoint_run_id(p) for p in steps} == {record["run_id"]}
    assert json.loads((out / "metrics.json").read_text())["steps"] == 2
    assert not (out / ".model.safetensors.x1.tmp").exists()


def test_overwrite_refuses_a_folder_with_files_attnlab_did_not_write(lm, snapshot, text,
                                                                     tmp_path, capsys):
    out = tmp_path / "run"
    assert main(lm(text, out)) == 0
    (out / "notes.txt").write_text("my notes\n")
    before = snapshot(out)
    assert main(lm(text, out, "--overwrite")) == 2
    assert one_error_line(capsys).endswith(
        f"--overwrite: {out} also holds notes.txt, which attnlab did not write; move them away "
        "or choose another --out (nothing was deleted)")
    assert snapshot(out) == before


def test_overwrite_with_data_that_fails_its_checks_keeps_the_old_run(lm, snapshot, text,
                                                                    tmp_path, capsys):
    out = tmp_path / "run"
    assert main(lm(text, out)) == 0
    before = snapshot(out)
    # the held-out check needs the tokenizer: it runs before the old run is deleted
    assert main(lm(text, out, "--overwrite", "--valid-fraction", "0.0001")) == 2
    assert "fewer than the 2 needed" in one_error_line(capsys)
    assert snapshot(out) == before


def test_resume_and_overwrite_exclude_each_other(lm, text, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        main(lm(text, tmp_path / "run", "--resume", "--overwrite"))
    assert exit.value.code == 2
    assert "argument --overwrite: not allowed with argument --resume" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_resume_lists_every_changed_setting_and_changes_nothing(lm, snapshot, text,
                                                                tmp_path, capsys):
    out = tmp_path / "run"
    assert main(lm(text, out)) == 0
    before = snapshot(out)
    other = tmp_path / "other.txt"
    shutil.copy(text, other)
    assert main(["train", "lm", "--out", str(out), "--resume", "--preset", "llama-tiny",
                 "--text", str(other), "--max-steps", "5"]) == 2
    assert one_error_line(capsys).endswith(
        f"--resume: this run was started with text={str(text)!r}, got {str(other)!r}; "
        "preset='gpt2-tiny', got 'llama-tiny' (a resumed run keeps its settings and data; only "
        "max_steps, time_budget, device, strategy, compile, activation_checkpointing, "
        "collective_timeout may change; --overwrite starts a new run in its place)")
    assert snapshot(out) == before


@dataclass
class MarkedLM(LMSettings):
    """LMSettings with its text declared as data (fingerprinted by the run folder)."""

    text: str = setting("", "UTF-8 text file to train on", data=True)


def marked(text: Path, out: Path, **values) -> LanguageModelTask:
    base = dict(text=str(text), out=str(out), max_steps=2, save_every=1, warmup_steps=1,
                block_size=16, batch_size=4, vocab_size=300, model_overrides={"n_layers": 1})
    return LanguageModelTask(MarkedLM(**{**base, **values}))


def test_resume_refuses_changed_data_under_the_same_path(snapshot, text, tmp_path):
    out = tmp_path / "run"
    run_task(marked(text, out), progress=False)
    record = json.loads((out / "run.json").read_text())
    size = text.stat().st_size
    assert record["data"]["text"]["size"] == size and len(
        record["data"]["text"]["sha256_first_mb"]) == 64
    with text.open("a") as f:
        f.write("one more line\n")
    before = snapshot(out)
    with pytest.raises(ConfigError) as error:
        run_task(marked(text, out, max_steps=4), resume=True, progress=False)
    assert str(error.value).startswith(
        f"--resume: this run was started with data {text} changed (size {size} -> "
        f"{size + 14}) (a resumed run keeps its settings and data;")
    assert snapshot(out) == before


def test_resume_with_a_longer_budget_continues_the_same_run(text, tmp_path):
    out = tmp_path / "run"
    run_task(marked(text, out), progress=False)
    run_id = json.loads((out / "run.json").read_text())["run_id"]
    outcome = run_task(marked(text, out, max_steps=3, time_budget=600.0), resume=True,
                       progress=False)
    assert outcome.metrics["steps"] == 3
    assert json.loads((out / "run.json").read_text())["run_id"] == run_id
    assert {checkpoint_run_id(p) for p in list_checkpoints(out / "checkpoints")} == {run_id}


def test_the_fingerprint_names_each_change_in_a_data_folder(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for name in ("train.src", "train.tgt", "valid.src"):
        (folder / name).write_text(f"{name} line\n")
    before = {"data": describe(folder)}
    (folder / "train.src").write_text("train.src LINE\n")  # same size, other bytes
    (folder / "valid.src").unlink()
    (folder / "test.src").write_text("x\n")
    assert fingerprint_differences(before, {"data": describe(folder)}) == [
        f"data {folder}/test.src is new",
        f"data {folder}/train.src changed (same size, other bytes in its first MB)",
        f"data {folder}/valid.src is gone"]
    assert fingerprint_differences(before, {"data": describe(tmp_path / "nothing")}) == [
        f"data {folder} is gone"]


def test_a_failed_run_leaves_no_final_model_and_resumes(lm, text, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"

    def failing(self, model, result, precision):
        raise DataError("scoring failed")

    monkeypatch.setattr(LanguageModelTask, "metrics", failing)
    assert main(lm(text, out)) == 2
    assert not [n for n in ("config.json", "model.safetensors", "metrics.json", "loss_curve.png")
                if (out / n).exists()]
    assert [p.name for p in list_checkpoints(out / "checkpoints")][-1] == "step_0000002"
    with pytest.raises(MissingFileError, match="config.json not found"):
        attnlab.from_pretrained(out)  # `attnlab generate` does not take it for a model
    assert main(["generate", "--model", str(out), "--prompt", "the"]) == 2
    assert one_error_line(capsys).endswith(
        f"holds a training run that has not finished (interrupted or failed; its checkpoints "
        f"are kept): continue it with `attnlab train lm --out {out} --resume`, or average its "
        f"checkpoints into a model with `attnlab average --model {out} --last N --out DIR`")
    monkeypatch.undo()
    assert main(["train", "lm", "--out", str(out), "--resume"]) == 0
    assert attnlab.from_pretrained(out).config.n_layers == 1


def test_a_failed_start_leaves_the_folder_as_it_was(lm, snapshot, text,
                                                    tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "mine.txt").write_text("kept\n")
    before = snapshot(out)
    real = LanguageModelTask.new_model

    def failing(self, folder):
        real(self, folder)
        (folder / "task-file.json").write_text("{}")
        raise DataError("no usable window")

    monkeypatch.setattr(LanguageModelTask, "new_model", failing)
    assert main(lm(text, out)) == 2
    assert snapshot(out) == before
    assert main(lm(text, tmp_path / "new")) == 2
    assert not (tmp_path / "new").exists()


def test_average_refuses_checkpoints_of_two_runs(lm, snapshot, text, tmp_path, capsys):
    out, other = tmp_path / "run", tmp_path / "other"
    assert main(lm(text, out)) == 0
    assert main(lm(text, other, "--max-steps", "3")) == 0
    shutil.copytree(other / "checkpoints" / "step_0000003", out / "checkpoints" / "step_0000003")
    ids = {name: checkpoint_run_id(folder / "checkpoints" / name)
           for name, folder in (("step_0000002", out), ("step_0000003", other))}
    before = snapshot(out)
    assert main(["average", "--model", str(out), "--last", "2"]) == 2
    assert one_error_line(capsys).endswith(
        f"{out / 'checkpoints'}: refusing to average checkpoints of different runs: "
        f"step_0000002 (run {ids['step_0000002']}), step_0000003 (run {ids['step_0000003']}); "
        f"the run folder is run {ids['step_0000002']}; average steps of one run only")
    assert snapshot(out) == before
    assert main(["average", "--model", str(other), "--last", "2"]) == 0


def test_average_of_an_unfinished_run_rebuilds_it_from_checkpoints(lm, text, tmp_path, capsys,
                                                                   monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setattr(LanguageModelTask, "metrics",
                        lambda *a: (_ for _ in ()).throw(DataError("stop")))
    assert main(lm(text, out)) == 2
    monkeypatch.undo()
    assert main(["average", "--model", str(out), "--last", "2", "--out",
                 str(tmp_path / "avg")]) == 0
    assert attnlab.from_pretrained(tmp_path / "avg").config.n_layers == 1


def test_each_demo_has_its_own_default_folder(monkeypatch):
    seen = {}
    monkeypatch.setattr(demo.reverse_demo, "run", lambda args: seen.setdefault("reverse",
                                                                               args.out) and 0)
    monkeypatch.setattr(demo, "run_translation", lambda args: seen.setdefault("translate",
                                                                              args.out) and 0)
    monkeypatch.setattr(demo, "check_target", lambda *a, **k: None)
    assert main(["demo", "--task", "reverse"]) == 0 and main(["demo"]) == 0
    assert seen == {"reverse": "runs/demo-reverse", "translate": "runs/demo"}


def test_the_reverse_demo_does_not_replace_a_run(snapshot, tmp_path, capsys):
    argv = ["demo", "--task", "reverse", "--out", str(tmp_path), "--steps", "2",
            "--batch-size", "4", "--max-len", "6"]
    assert main(argv) == 0
    before = snapshot(tmp_path)
    assert main(argv) == 2
    assert one_error_line(capsys).endswith(
        f"--out {tmp_path} already holds a run (run.json, metrics.json): add --overwrite to "
        "replace it (or choose another --out)")
    assert snapshot(tmp_path) == before
    assert main([*argv, "--overwrite"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cross_attention.png", "metrics.json",
                                                         "run.json"]


def test_a_checkpoint_of_another_run_is_not_resumed(text, tmp_path):
    out, other = tmp_path / "run", tmp_path / "other"
    run_task(marked(text, out), progress=False)
    run_task(marked(text, other, max_steps=3), progress=False)
    shutil.copytree(other / "checkpoints" / "step_0000003", out / "checkpoints" / "step_0000003")
    (out / "checkpoints" / "latest").write_text("step_0000003\n")
    with pytest.raises(FolderError, match="step_0000003: this checkpoint belongs to run "):
        run_task(marked(text, out, max_steps=4), resume=True, progress=False)


def test_an_out_that_is_a_file_is_refused(lm, text, tmp_path, capsys):
    out = tmp_path / "file"
    out.write_text("not a folder\n")
    assert main(lm(text, out)) == 2
    assert one_error_line(capsys).endswith(f"--out {out} is a file; expected a folder for the run")
    assert out.read_text() == "not a folder\n"


def test_every_task_declares_its_input_data_for_the_fingerprint():
    from attnlab.tasks.classification import ClassifySettings
    from attnlab.tasks.masked_lm import MLMSettings
    from attnlab.tasks.translation import TranslationSettings
    from attnlab.training.settings import data_fields

    assert data_fields(LMSettings) == ["text"]
    assert data_fields(MLMSettings) == ["text"]
    assert data_fields(TranslationSettings) == ["data"]
    assert data_fields(ClassifySettings) == ["data", "init"]


def test_resume_refuses_a_text_changed_under_the_same_path(lm, snapshot, text, tmp_path,
                                                          capsys):
    out = tmp_path / "run"
    assert main(lm(text, out)) == 0
    text.write_text(text.read_text() + "one more line of text\n")
    before = snapshot(out)
    assert main(lm(text, out, "--resume", "--max-steps", "4")) == 2
    assert f"data {text} changed" in one_error_line(capsys)
    assert snapshot(out) == before
