"""The transformers comparison runs end to end on tiny models (timings are never asserted)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers")



def test_quick_run_records_ratios_and_identical_tokens(load_benchmark, tmp_path):
    bench = load_benchmark("vs_transformers")
    out = tmp_path / "vs.json"
    assert bench.main(["--quick", "--repeats", "1", "--batch-sizes", "2", "--train-lens", "16",
                       "--new-tokens", "4", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    tasks = {(r["model"], r["task"]) for r in result["records"]}
    assert tasks == {(m, t) for m in ("gpt2", "llama-small")
                     for t in ("train_step", "greedy_generation")}
    for record in result["records"]:
        assert record["ratio"] > 0
        assert record.get("same_tokens", True) is True
    assert result["machine"]["cpu_count"] >= 1 and "--quick" in result["command"]
