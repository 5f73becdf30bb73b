"""The `attnlab` command line: list, demo, help and errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from attnlab.cli.main import main


def test_list_shows_every_registry(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("multi_head", "additive", "multiplicative", "sinusoidal", "learned", "relative",
                 "rope", "alibi", "transformer-base", "transformer-big", "transformer-tiny",
                 "sdpa", "reference", "swiglu", "rms"):
        assert name in out, name


def test_list_shows_what_each_attention_supports(capsys):
    assert main(["list", "--json"]) == 0
    attention = json.loads(capsys.readouterr().out)["attention"]
    assert "[causal, padding, cross, cache]" in attention["multi_head"]
    assert "causal" not in attention["longformer"] and "O(" in attention["longformer"]


def test_list_json(capsys):
    assert main(["list", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert set(table["attention"]) >= {"multi_head", "additive", "multiplicative"}


def test_console_script_help():
    result = subprocess.run([sys.executable, "-m", "attnlab.cli.main", "--help"],
                            capture_output=True, text=True, check=True)
    assert "demo" in result.stdout and "list" in result.stdout


def test_reverse_demo_runs_tiny(tmp_path, capsys):
    code = main(["demo", "--task", "reverse", "--out", str(tmp_path), "--steps", "3",
                 "--batch-size", "8", "--max-len", "8"])
    assert code == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["steps"] == 3 and metrics["cached_equals_uncached"] is True
    assert (tmp_path / "cross_attention.png").stat().st_size > 1000


def test_bad_argument_is_a_clear_error(tmp_path, capsys):
    assert main(["demo", "--task", "reverse", "--out", str(tmp_path), "--steps", "0"]) == 2
    assert "--steps must be positive, got 0" in capsys.readouterr().err


def test_translation_demo_runs_tiny(tmp_path, capsys):
    """The `make demo` path on a sliver of the corpus and a one-second budget."""
    code = main(["demo", "--out", str(tmp_path), "--time-budget", "1", "--train-size", "300",
                 "--valid-size", "20", "--test-size", "60"])
    assert code == 0
    out = capsys.readouterr().out
    assert "test BLEU" in out and "word-by-word baseline" in out
    assert out.count("  reference  ") == 5 and out.count("  attnlab    ") == 5
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["sentences"] == 60 and metrics["stopped_by"] == "time_budget"
    assert 0.0 <= metrics["test_ambiguous"]["sense_accuracy"] <= 1.0
    demo = json.loads((tmp_path / "demo.json").read_text())
    assert demo["bleu"] == metrics["bleu"]
    assert (tmp_path / "alignment.png").stat().st_size > 1000
    assert (tmp_path / "loss_curve.png").is_file() and (tmp_path / "test.hyp").is_file()


def test_translation_demo_counts_steps_and_prints_from_the_run(tmp_path, capsys, monkeypatch):
    """Without --time-budget the demo trains a fixed number of steps; what it prints comes from
    the run in memory: the corpus is generated once and no model folder is read back."""
    import attnlab
    import attnlab.data.corpus as corpus_module

    calls = []
    real = corpus_module.generate_corpus
    monkeypatch.setattr(corpus_module, "generate_corpus",
                        lambda **kw: calls.append(kw) or real(**kw))
    monkeypatch.setattr(attnlab, "from_pretrained", lambda *a, **k: pytest.fail("reloaded"))
    code = main(["demo", "--out", str(tmp_path), "--max-steps", "3", "--train-size", "300",
                 "--valid-size", "20", "--test-size", "60"])
    assert code == 0
    out = capsys.readouterr().out
    assert "3 training steps on the built-in corpus" in out and "test BLEU" in out
    assert len(calls) == 1
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["steps"] == 3 and metrics["stopped_by"] == "max_steps"


def test_the_demo_recipe_counts_steps_not_seconds():
    from attnlab.tasks.translation import load_recipe

    recipe = load_recipe("demo")
    assert recipe["max_steps"] == 1800 and "time_budget" not in recipe
