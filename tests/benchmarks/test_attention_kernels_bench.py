"""The attention-kernel benchmark runs end to end on tiny settings (timings are never asserted)."""

from __future__ import annotations

import json
import math
from pathlib import Path

IMPLS = {"torch", "sdpa", "reference", "naive"}




def finite_positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_tiny_run_writes_json_and_plot(load_benchmark, tmp_path: Path, capsys) -> None:
    bench = load_benchmark("attention_kernels")
    # Cap chosen from the script's own estimate so that exactly the causal reference at T=64
    # (four score-sized tensors) is skipped: the skip path is exercised too.
    cap = bench.estimate_peak_bytes("reference", 1, 2, 64, 8, causal=True) / 2**30 * 0.99
    argv = ["--lengths", "32", "64", "--heads", "2", "--head-dim", "8",
            "--repeats", "1", "--min-repeats", "1", "--budget", "0",
            "--module-lengths", "32", "--d-model", "32", "--n-heads", "2", "--batch", "2",
            "--module-repeats", "1", "--module-budget", "0",
            "--max-gib", repr(cap), "--out", str(tmp_path)]
    returned = bench.main(argv)

    saved = json.loads((tmp_path / "attention_kernels.json").read_text())
    assert saved == json.loads(json.dumps(returned))
    assert {"command", "date", "machine", "settings", "memory_method", "records"} <= set(saved)
    assert "--lengths 32 64" in saved["command"]
    assert {"platform", "cpu", "cores", "torch", "threads"} <= set(saved["machine"])
    assert (tmp_path / "attention_kernels.png").stat().st_size > 1000

    kernels = [r for r in saved["records"] if r["bench"] == "kernel"]
    assert {(r["impl"], r["T"], r["causal"]) for r in kernels} == {
        (i, t, c) for i in IMPLS for t in (32, 64) for c in (False, True)
    }
    skipped = [r for r in kernels if "skipped" in r]
    assert [(r["impl"], r["T"], r["causal"]) for r in skipped] == [("reference", 64, True)]
    assert "--max-gib" in skipped[0]["skipped"] and "ms" not in skipped[0]
    for r in kernels:
        if "skipped" in r:
            continue
        assert finite_positive(r["ms"]) and finite_positive(r["ratio_vs_torch_sdpa"])
        assert r["repeats"] == 1 and r["max_abs_err_vs_torch"] < 1e-4
        assert r["peak_mib"] is not None and math.isfinite(r["peak_mib"]) and r["peak_mib"] >= 0
        assert finite_positive(r["est_peak_mib"]) and finite_positive(r["cpu_share"])

    overhead = [r for r in saved["records"] if r["bench"] == "module_overhead"]
    assert {(r["mode"], r["causal"]) for r in overhead} == {
        (m, c) for m in ("forward", "train") for c in (False, True)
    }
    for r in overhead:
        assert all(finite_positive(r[k]) for k in ("ours_ms", "direct_ms", "ratio", "cpu_share"))
        assert r["target"] == 1.10 and isinstance(r["within_target"], bool)

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert lines == saved["records"]
