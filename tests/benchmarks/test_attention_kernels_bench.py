"""The kernel benchmark runs end to end on tiny settings and writes its JSON and plot."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "attention_kernels.py"


def load_script():
    spec = importlib.util.spec_from_file_location("attention_kernels_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_run_writes_results(tmp_path):
    bench = load_script()
    records = bench.main(["--lengths", "32", "64", "--module-lengths", "16", "--repeats", "1",
                          "--heads", "2", "--head-dim", "8", "--out", str(tmp_path),
                          "--max-gib", "0.00006"])
    saved = json.loads((tmp_path / "attention_kernels.json").read_text())
    assert saved["records"] == records and "attention_kernels.py" in saved["command"]
    assert {"cpu", "cores", "torch"} <= set(saved["machine"])
    assert (tmp_path / "attention_kernels.png").stat().st_size > 1000
    kernels = [r for r in records if r["bench"] == "kernel"]
    assert len(kernels) == 2 * 2 * 4  # lengths x causal x implementations
    # The memory cap skips the materializing implementations and says why.
    materializing = [r for r in kernels if r["impl"] in ("naive", "reference")]
    assert all(("skipped" in r) == (r["T"] == 64) for r in materializing)
    for r in kernels:
        if "ms" in r:
            assert math.isfinite(r["ms"]) and r["ms"] > 0 and r["peak_mib"] is not None
    overhead = [r for r in records if r["bench"] == "module_overhead"]
    assert {r["mode"] for r in overhead} == {"forward", "forward+backward"}
    assert all(math.isfinite(r["ratio"]) for r in overhead)
