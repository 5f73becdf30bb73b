"""The transformers comparison runs end to end on tiny models (timings are never asserted)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("transformers")

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "vs_transformers.py"


def test_quick_run_records_ratios_and_identical_tokens(tmp_path):
    spec = importlib.util.spec_from_file_location("vs_transformers_bench", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
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
