"""The lower-precision generation benchmark runs end to end on tiny models (timings are never
asserted): every side is recorded with its ratio and roofline fraction."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers")


def test_quick_run_records_every_side(load_benchmark, tmp_path):
    bench = load_benchmark("quantized_generation")
    out = tmp_path / "q.json"
    bench.main(["--quick", "--repeats", "1", "--batch-sizes", "2", "--new-tokens", "4",
                "--out", str(out)])
    result = json.loads(out.read_text())
    sides = {(r["model"], r["side"]) for r in result["speed"]}
    assert sides == {(m, s) for m in ("gpt2", "llama-small") for s in (
        "attnlab fp32", "attnlab bf16", "attnlab int8", "attnlab int4", "transformers fp32")}
    for record in result["speed"]:
        assert record["tokens_per_s"] > 0 and 0 < record["fraction_of_roofline"]
        assert 0 <= record["tokens_same_as_fp32"] <= 1
    assert result["read_bandwidth"]["unit"] and "--quick" in result["command"]
