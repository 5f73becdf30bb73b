"""The demo recorder runs end to end on a sliver of the corpus (figures are never asserted)."""

from __future__ import annotations

import json


def test_quick_run_writes_the_record(load_benchmark, tmp_path, monkeypatch, capsys):
    bench = load_benchmark("translation_demo")
    # Smaller still than --quick: the test checks the plumbing, not the model.
    monkeypatch.setattr(bench, "attnlab_main", lambda argv: _tiny_demo(argv))
    out = tmp_path / "result.json"
    assert bench.main(["--quick", "--run-dir", str(tmp_path / "run"), "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["benchmark"] == "translation_demo" and record["quick"] is True
    assert record["machine"]["cpu_count"] >= 1 and "torch" in record["machine"]
    assert 0.0 <= record["bleu"] <= 100.0 and record["train_and_eval_seconds"] > 0
    assert record["meets_bleu_target"] == (record["bleu"] >= 85.0)
    assert "--quick" in record["command"]


def _tiny_demo(argv):
    from attnlab.cli.main import main

    sizes = ["--time-budget", "1", "--train-size", "200", "--valid-size", "10",
             "--test-size", "20"]
    return main([*argv[:3], *sizes])
