"""The own-corpus recorder: its targets, and a record that keeps other pairs' runs (the
training itself is stubbed: figures are never asserted)."""

from __future__ import annotations

import json


def test_targets_follow_the_issue(load_benchmark):
    bench = load_benchmark("own_corpus")
    assert bench.target_for(43.3, "kjv-web") == 48.3  # copying scores > 30: 5 above it
    assert bench.target_for(0.1, "es-en") == 10.0  # copying scores ~0: 10 absolute
    assert bench.target_for(0.0, "builtin") == 85.0


def test_a_run_of_one_pair_keeps_the_others_recorded(load_benchmark, tmp_path, monkeypatch, capsys):
    bench = load_benchmark("own_corpus")

    def fake_run(name, budget, work):
        return {"pair": name, "bleu": 12.0, "baselines": {"copy_source": {"bleu": 0.1}},
                "target_bleu": 10.0, "meets_target": True, "steps": 7}

    monkeypatch.setattr(bench, "run_pair", fake_run)
    out = tmp_path / "own.json"
    assert bench.main(["--pairs", "es-en", "kjv-web", "--out", str(out)]) == 0
    assert bench.main(["--pairs", "es-en", "--time-budget", "30", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert [r["pair"] for r in record["runs"]] == ["kjv-web", "es-en"]
    assert all("machine" in r and "date" in r for r in record["runs"])
    assert record["time_budget"] == 30 and "--time-budget 30" in record["command"]
    assert any("kjv-web" in c for c in record["earlier_commands"])
    assert '"meets_target": true' in capsys.readouterr().out
