"""The serve load benchmark runs end to end on tiny settings against a real `attnlab serve`
subprocess (its record's fields; nothing fails below the limits); speed is never asserted."""

from __future__ import annotations

import json
from pathlib import Path


def test_serve_load_quick_writes_its_record(load_benchmark, tmp_path: Path) -> None:
    bench = load_benchmark("serve_load")
    out = tmp_path / "serve_load_quick.json"
    argv = ["--quick", "--requests", "4", "--max-tokens", "8", "--level-seconds", "5",
            "--vocab-size", "300", "--corpus-lines", "300", "--out", str(out)]
    returned = bench.main(argv)

    record = json.loads(out.read_text())
    assert record == json.loads(json.dumps(returned))
    assert {"command", "date", "machine", "benchmark", "attnlab", "httpx", "server_command",
            "limits", "settings", "request", "models", "results", "passed"} <= set(record)
    assert {"platform", "cpu", "cpu_flags", "cpu_count", "python", "torch",
            "torch_threads"} <= set(record["machine"])
    assert "--quick" in record["command"] and "--max-tokens 8" in record["command"]
    assert "--max-batch 32 --max-queue 16" in record["server_command"]
    assert record["limits"] == {"max_batch": 32, "max_queue": 16}
    assert list(record["results"]) == ["gpt2-tiny"] == list(record["models"])

    result = record["results"]["gpt2-tiny"]
    assert set(result["without_http"]["decode_step_ms"]) == {"1", "16"}
    assert [level["clients"] for level in result["levels"]] == [1, 4]
    for level in result["levels"]:
        # 4 requests shared by the clients, at least 2 each; all well below the limits
        assert level["requests_sent"] == level["completed"] == max(4, 2 * level["clients"])
        assert level["rate_limited"] == level["timeouts"] == 0 and level["failures"] == {}
        assert level["output_tokens"] == 8 * level["completed"]  # ignore_eos: max_tokens each
        assert level["output_tokens_per_s"] > 0 and level["requests_per_s"] > 0
        assert level["ttft_ms"]["p50"] <= level["ttft_ms"]["p99"]
        assert level["per_token_ms"]["p50"] is not None and level["tokens_per_chunk"] >= 1
        assert level["server"]["decode_steps"] > 0 and level["server"]["mean_batch"] >= 1
        assert level["client_cores"] >= 0 and level["server"].get("cores", 0) >= 0
    assert result["ratio_16_vs_1"] is None  # --quick has no 16-client level
    assert result["targets"] == {"ratio_16_vs_1_at_least_4": None,
                                 "no_errors_below_limits": True,
                                 "above_limits_429_not_timeouts": None}
    assert record["passed"] is True

    bench.plot(record["results"], tmp_path / "serve_load.png")
    assert (tmp_path / "serve_load.png").read_bytes()[:4] == b"\x89PNG"


def test_targets_tell_429s_from_failures(load_benchmark) -> None:
    bench = load_benchmark("serve_load")
    args = bench.parse_args([])  # max_batch 32 + max_queue 16: 48 clients fit

    def level(clients: int, rate_limited: int = 0, timeouts: int = 0, failures=None) -> dict:
        return {"clients": clients, "rate_limited": rate_limited, "timeouts": timeouts,
                "failures": failures or {}}

    good = {"levels": [level(1), level(16), level(64, rate_limited=9)], "ratio_16_vs_1": 4.5}
    assert bench.targets(good, args) == {"ratio_16_vs_1_at_least_4": True,
                                         "no_errors_below_limits": True,
                                         "above_limits_429_not_timeouts": True}
    slow = {**good, "ratio_16_vs_1": 3.9}
    assert bench.targets(slow, args)["ratio_16_vs_1_at_least_4"] is False
    refused_below = {**good, "levels": [level(16, rate_limited=1), level(64, rate_limited=9)]}
    assert bench.targets(refused_below, args)["no_errors_below_limits"] is False
    timed_out_above = {**good, "levels": [level(1), level(64, rate_limited=9, timeouts=1)]}
    assert bench.targets(timed_out_above, args)["above_limits_429_not_timeouts"] is False
    failed_above = {**good, "levels": [level(64, rate_limited=3, failures={"HTTP 500": 1})]}
    assert bench.targets(failed_above, args)["above_limits_429_not_timeouts"] is False
