"""The decoding-cache benchmark script runs end to end on tiny settings (timings never asserted)."""

from __future__ import annotations

import json
from pathlib import Path


def test_decoding_cache_benchmark_writes_results(load_benchmark, tmp_path: Path, capsys) -> None:
    out = tmp_path / "decoding_cache.json"
    argv = ["--quick", "--d-model", "16", "--n-heads", "2", "--n-layers", "1", "--d-ff", "32",
            "--vocab-size", "50", "--source-len", "5", "--new-tokens", "6", "--beam-size", "2",
            "--repeats", "2", "--out", str(out)]
    returned = load_benchmark("decoding_cache").main(argv)

    result = json.loads(out.read_text())
    assert result == json.loads(json.dumps(returned))
    assert {"command", "date", "machine", "settings", "model", "records"} <= set(result)
    assert {"platform", "cpu", "cpu_count", "torch", "torch_threads"} <= set(result["machine"])
    assert "--new-tokens 6" in result["command"]
    records = result["records"]
    assert [(r["method"], r["batch_size"]) for r in records] == [
        ("greedy", 1), ("beam", 1), ("greedy", 8), ("beam", 8)
    ]
    for record in records:
        assert record["new_tokens"] == 6  # EOS is masked, so every output has the full length
        assert record["same_tokens"] is True
        assert len(record["cached_runs_s"]) == len(record["uncached_runs_s"]) == 2
        assert record["speedup"] > 0 and record["cached_s"] > 0
    assert records[1]["beam_size"] == 2 and records[0]["beam_size"] == 1

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    assert len(lines) == len(records)
    assert all(line["benchmark"] == "decoding_cache" and "speedup" in line for line in lines)
