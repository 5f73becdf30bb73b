"""The growing-vs-preallocated cache benchmark runs end to end on tiny models (timings never
asserted)."""

from __future__ import annotations

import json
from pathlib import Path


def test_preallocated_cache_benchmark_writes_results(load_benchmark, tmp_path: Path,
                                                     capsys) -> None:
    out = tmp_path / "preallocated_cache.json"
    argv = ["--quick", "--prompt-lens", "3", "9", "--new-tokens", "5", "--batch-sizes", "1", "2",
            "--repeats", "2", "--out", str(out)]
    returned = load_benchmark("preallocated_cache").main(argv)

    result = json.loads(out.read_text())
    assert result == json.loads(json.dumps(returned))
    assert {"command", "date", "machine", "settings", "models", "records"} <= set(result)
    assert {"platform", "cpu", "cpu_count", "torch", "torch_threads"} <= set(result["machine"])
    assert "--new-tokens 5" in result["command"]
    assert set(result["models"]) == {"gpt2", "llama-small"}
    records = result["records"]
    assert [(r["model"], r["batch"], r["prompt"]) for r in records] == [
        (model, batch, prompt) for model in ("gpt2", "llama-small") for batch in (1, 2)
        for prompt in (3, 9)
    ]
    for record in records:
        assert record["new_tokens"] == 5 and record["same_tokens"] is True
        assert len(record["growing_runs_s"]) == len(record["preallocated_runs_s"]) == 2
        assert len(record["growing_decode_runs_s"]) == 2
        assert record["ratio"] > 0 and record["preallocated_tokens_per_s"] > 0
        assert record["decode_ratio"] > 0
        assert all(decode < total for decode, total in
                   zip(record["growing_decode_runs_s"], record["growing_runs_s"], strict=True))

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    assert len(lines) == len(records)
    assert all(line["benchmark"] == "preallocated_cache" and "ratio" in line for line in lines)
