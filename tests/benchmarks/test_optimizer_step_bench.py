"""The optimizer-step benchmark runs end to end on tiny models (timings are never asserted):
every AdamW variant and both whole training steps are recorded."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers")


def test_quick_run_records_every_variant(load_benchmark, tmp_path):
    bench = load_benchmark("optimizer_step")
    out = tmp_path / "o.json"
    bench.main(["--quick", "--repeats", "1", "--length", "16", "--out", str(out)])
    result = json.loads(out.read_text())
    assert [r["model"] for r in result["records"]] == ["gpt2", "llama-small"]
    for record in result["records"]:
        assert set(record["adamw_step_ms"]) == {"loop", "foreach", "fused"}
        assert set(record["train_step"]) == {"loop", "fused (attnlab)"}
        assert all(step["tokens_per_s"] > 0 for step in record["train_step"].values())
    assert "--quick" in result["command"]
