"""The one run routine, tested once for every task: the flags every `attnlab train` command
takes, exit codes (bad value 2, Ctrl-C 130 with the resume line, a bug keeps its traceback),
resume refusing changed settings, the translation loss, and the timing note."""

from __future__ import annotations

import json
import random
import signal
from types import SimpleNamespace

import pytest
import torch

from attnlab.cli.main import main
from attnlab.models import build_model
from attnlab.tasks.language_model import LanguageModelTask
from attnlab.tasks.translation import TranslationSettings, loss_fn, prepare_corpus
from attnlab.training.device import available_cores, cap_torch_threads
from attnlab.training.plan import StepPlan
from attnlab.training.trainer import Trainer

PAIRS = [("the cat sleeps", "ka miro dormas"), ("the dog eats bread", "ka hundo panok mangas"),
         ("a bird sings", "un vogo kantas"), ("the old cat eats fish", "ka miro alta fiskok")]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("run-data")
    rng = random.Random(0)
    words = "the cat sat on a warm mat while the dog ran after a red ball".split()
    text = root / "text.txt"
    text.write_text("\n".join(" ".join(rng.choice(words) for _ in range(8)) for _ in range(200))
                    + "\n")
    tsv = root / "tsv"
    tsv.mkdir()
    for split in ("train", "valid"):
        lines = [f"{'great' if i % 2 else 'awful'} film {rng.choice(words)}\t"
                 f"{'pos' if i % 2 else 'neg'}" for i in range(40)]
        (tsv / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    corpus = root / "corpus"
    corpus.mkdir()
    for split in ("train", "valid", "test"):
        (corpus / f"{split}.src").write_text("".join(s + "\n" for s, _ in PAIRS) * 3)
        (corpus / f"{split}.tgt").write_text("".join(t + "\n" for _, t in PAIRS) * 3)
    return SimpleNamespace(text=text, tsv=tsv, corpus=corpus)


def command(task: str, data, out) -> list[str]:
    """A few-step run of each task on tiny settings."""
    common = ["--out", str(out), "--max-steps", "2", "--save-every", "0", "--warmup-steps", "1"]
    small = ["--vocab-size", "300"]
    return ["train", task, *common, *{
        "translate": ["--data", str(data.corpus), "--src-lang", "src", "--tgt-lang", "tgt",
                      "--preset", "transformer-tiny", "--max-tokens", "256", *small,
                      "--set", "d_model=32", "--set", "n_heads=2", "--set", "n_layers=1",
                      "--set", "d_ff=64", "--eval-sentences", "4"],
        "lm": ["--text", str(data.text), "--block-size", "16", "--batch-size", "4", *small],
        "mlm": ["--text", str(data.text), "--block-size", "16", "--batch-size", "4", *small],
        "classify": ["--data", str(data.tsv), "--batch-size", "8", *small],
    }[task]]


TASKS = ["translate", "lm", "mlm", "classify"]


@pytest.mark.parametrize("task", TASKS)
def test_every_train_command_takes_device_and_precision(task, data, tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*command(task, data, out), "--device", "cpu", "--precision", "bf16"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["precision"] == "bf16" and metrics["steps"] == 2
    saved = json.loads((out / "train_settings.json").read_text())
    assert saved["device"] == "cpu" and saved["precision"] == "bf16"
    assert (out / "loss_curve.png").is_file()


def test_fp32_and_config_file_and_set(data, tmp_path, capsys):
    config = tmp_path / "lm.json"
    config.write_text(json.dumps({"_note": "comment", "block_size": 12, "seed": 5}))
    out = tmp_path / "run"
    assert main([*command("lm", data, out), "--config", str(config), "--seed", "7",
                 "--precision", "fp32", "--set", "n_layers=1"]) == 0
    saved = json.loads((out / "train_settings.json").read_text())
    assert saved["block_size"] == 16  # the flag beats the file (command() passes 16)
    assert saved["seed"] == 7 and saved["model_overrides"] == {"n_layers": 1}
    assert json.loads((out / "config.json").read_text())["n_layer"] == 1
    assert json.loads((out / "metrics.json").read_text())["precision"] == "fp32"


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("argv, message", [
    (["--max-steps", "0"], "--max-steps must be a positive integer, got 0"),
    (["--max-steps", "x"], "argument --max-steps: expected an integer, got 'x'"),
    (["--precision", "fp8"], "--precision must be one of ['auto', 'fp32', 'bf16', 'fp16'], "
                              "got 'fp8'"),
    (["--time-budget", "-1"], "--time-budget must be a positive number or none, got -1.0"),
    (["--device", "gpu0"], "--device must be auto, cpu, cuda or cuda:N, got 'gpu0'"),
])
def test_a_bad_value_is_one_line_and_exit_2(task, argv, message, data, tmp_path, capsys):
    try:
        code = main([*command(task, data, tmp_path / "x"), *argv])
    except SystemExit as exit:  # argparse could not read the flag
        code = exit.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"attnlab train {task}: error: ")
    assert message in err
    assert not (tmp_path / "x").exists()  # nothing written


def test_ctrl_c_saves_says_how_to_resume_and_exits_130(data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    real_step = Trainer.train_step

    def step_then_ctrl_c(self):
        result = real_step(self)
        if self.step == 1:
            signal.raise_signal(signal.SIGINT)  # the Trainer's handler: finish, save, stop
        return result

    monkeypatch.setattr(Trainer, "train_step", step_then_ctrl_c)
    argv = command("lm", data, out)
    assert main(argv) == 130
    err = capsys.readouterr().err
    line = f"resume with `attnlab train lm --out {out} --resume`"
    assert line in err and (out / "checkpoints" / "step_0000001").is_dir()
    # an interrupted run is not a model: no final files until the run ends well
    assert not [name for name in ("config.json", "model.safetensors", "metrics.json")
                if (out / name).exists()]
    monkeypatch.undo()
    assert main(["train", "lm", "--out", str(out), "--resume"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 2 and len(metrics["evaluations"]) == 1


def test_ctrl_c_outside_training_exits_130(data, tmp_path, monkeypatch, capsys):
    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(LanguageModelTask, "load_data", interrupted)
    assert main(command("lm", data, tmp_path / "run")) == 130
    assert capsys.readouterr().err == "attnlab train lm: interrupted\n"


def test_a_bug_keeps_its_traceback(data, tmp_path, monkeypatch):
    def bug(self):
        raise TypeError("a bug of ours")

    monkeypatch.setattr(LanguageModelTask, "load_data", bug)
    with pytest.raises(TypeError, match="a bug of ours"):
        main(command("lm", data, tmp_path / "run"))


def test_resume_keeps_the_settings_and_refuses_a_change(data, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(command("lm", data, out)) == 0
    assert main(["train", "lm", "--out", str(out), "--resume", "--lr", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "--resume: this run was started with lr=0.001, got 0.5 (a resumed run keeps" in err
    assert main(["train", "lm", "--out", str(out), "--resume", "--max-steps", "3"]) == 0
    assert json.loads((out / "metrics.json").read_text())["steps"] == 3
    assert main(["train", "mlm", "--out", str(tmp_path / "none"), "--resume"]) == 2
    assert "train_settings.json not found" in capsys.readouterr().err


def test_the_translation_loss_is_label_smoothed_cross_entropy():
    """loss_fn applies the run's label smoothing itself (the model is called without labels):
    equal to a float64 computation of (1 - eps) * NLL + eps * mean over V of -log p."""
    torch.manual_seed(0)
    model = build_model("transformer-tiny", vocab_size=50, d_model=32, n_heads=2, n_layers=1,
                        d_ff=64, dropout=0.0).eval()
    labels = torch.randint(4, 50, (3, 7))
    labels[0, 5:] = -100
    batch = {"input_ids": torch.randint(4, 50, (3, 6)),
             "attention_mask": torch.ones(3, 6, dtype=torch.long), "labels": labels}
    batch["attention_mask"][1, 4:] = 0
    for eps in (0.0, 0.1):
        loss, tokens = loss_fn(model, batch, eps)
        from attnlab.models.common import shift_right

        c = model.config
        decoder_input_ids = shift_right(labels, c.decoder_start_token_id, c.pad_token_id)
        logits = model(batch["input_ids"], decoder_input_ids=decoder_input_ids,
                       attention_mask=batch["attention_mask"]).logits.double()
        logp = logits.log_softmax(-1)[labels != -100]  # (N, V)
        target = labels[labels != -100]
        nll = -logp.gather(1, target[:, None]).squeeze(1)
        expected = ((1 - eps) * nll + eps * -logp.mean(-1)).mean()
        assert tokens == int((labels != -100).sum())
        torch.testing.assert_close(loss.double(), expected, atol=1e-6, rtol=1e-6)
        if getattr(c, "label_smoothing", None) is not None:  # while the model still has it
            object.__setattr__(c, "label_smoothing", eps)
            torch.testing.assert_close(loss, model(**batch).loss, atol=1e-6, rtol=1e-6)


def test_test_split_is_generated_without_the_training_pairs(monkeypatch):
    s = TranslationSettings(builtin_train_size=400, builtin_valid_size=30, builtin_test_size=50)
    full = prepare_corpus(s)
    import attnlab.data.corpus as corpus_module

    sizes = []
    real = corpus_module.generate_corpus

    def recording(**kwargs):
        sizes.append(kwargs["train_size"])
        return real(**kwargs)

    monkeypatch.setattr(corpus_module, "generate_corpus", recording)
    test_only = prepare_corpus(s, splits=("test",))
    valid_only = prepare_corpus(s, splits=("valid",))
    assert sizes == [0, 0]
    assert test_only.split("test") == full.split("test")
    assert valid_only.split("valid") == full.split("valid")
    assert test_only.test_buckets == full.test_buckets


def test_torch_threads_never_exceed_the_cores_of_the_process(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        torch.set_num_threads(available_cores() + 3)
        assert cap_torch_threads() == available_cores() == torch.get_num_threads()
        torch.set_num_threads(1)  # a user's lower choice stays
        assert cap_torch_threads() == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "64")  # a user's explicit setting stays
        torch.set_num_threads(available_cores() + 1)
        assert cap_torch_threads() == available_cores() + 1
    finally:
        torch.set_num_threads(before)


def test_expected_time_is_printed_from_the_first_timed_steps(capsys):
    plan = StepPlan(max_steps=112, time_budget=None)
    trainer = SimpleNamespace(step=0, train_seconds=0.0)
    for step in range(1, 20):
        trainer.step, trainer.train_seconds = step, step * 0.5 + (5.0 if step > 1 else 0.0)
        plan.on_step(trainer)
    out = capsys.readouterr().err
    # steps 4..13 took 0.5 s each: 2 steps/s, 99 steps left -> 49.5 s
    assert out == ("expected training time: ~0.8 min more for 99 steps at the measured "
                   "2.00 steps/s\n")
