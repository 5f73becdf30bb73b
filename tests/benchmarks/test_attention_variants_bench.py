"""`attnlab bench attention` and benchmarks/attention_variants.py: a tiny run end to end, the
exponent fit and crossover logic on synthetic numbers, the stopping rules, the error against
exact attention, and bad arguments (timings are never asserted)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from attnlab.cli.main import main
from attnlab.nn import functional as AF
from attnlab.nn.attention import ATTENTION
from attnlab.nn.attention.efficient import EfficientAttention
from attnlab.studies import attention_bench_measure as measure
from attnlab.studies.attention_bench import (
    AttentionBenchSettings,
    Entry,
    crossover,
    default_names,
    describe,
    fit_exponent,
    run_attention_bench,
    select_entries,
)
from attnlab.studies.attention_bench_error import approximation_error
from attnlab.studies.attention_bench_measure import stop_reason

torch.set_num_threads(1)

TINY = dict(lengths=[16, 32], repeats=1, d_model=16, n_heads=2, error_length=16, error_seeds=2)
RECORD_KEYS = {"variant", "T", "forward_ms", "train_ms", "forward_peak_mib", "train_peak_mib",
               "repeats"}
VARIANT_KEYS = {"kind", "complexity", "budget_knob", "supports_causal", "supports_mask",
                "supports_cross", "exponents", "crossover", "error", "stopped", "stopped_at",
                "ratio_vs_baseline", "measured_lengths"}


def other_variant() -> str:
    """An efficient variant if one is registered yet, else the RNN-era additive attention."""
    names = [n for n in default_names() if n != "multi_head"]
    return names[0] if names else "additive"




def test_tiny_script_run_writes_json_markdown_and_plot(load_benchmark, tmp_path: Path,
                                                      capsys) -> None:
    other = other_variant()
    argv = ["--names", "multi_head", other, "--lengths", "16", "32", "--repeats", "1",
            "--d-model", "16", "--n-heads", "2", "--error-length", "16", "--error-seeds", "2",
            "--out", str(tmp_path)]
    returned = load_benchmark("attention_variants").main(argv)

    saved = json.loads((tmp_path / "attention_variants.json").read_text())
    assert saved == json.loads(json.dumps(returned))
    assert {"command", "date", "machine", "settings", "methods", "baseline", "variants",
            "records", "wall_s"} <= set(saved)
    assert "--lengths 16 32" in saved["command"]
    assert {"cpu", "torch", "torch_threads"} <= set(saved["machine"])
    assert list(saved["variants"]) == ["multi_head", "multi_head:reference", other]
    for info in saved["variants"].values():
        assert VARIANT_KEYS <= set(info)
        assert info["stopped"] is None and info["measured_lengths"] == [16, 32]
    assert saved["variants"]["multi_head"]["crossover"] is None
    assert set(saved["variants"][other]["crossover"]) == {"forward_ms", "train_ms"}
    assert {(r["variant"], r["T"]) for r in saved["records"]} == {
        (v, t) for v in saved["variants"] for t in (16, 32)}
    for r in saved["records"]:
        assert set(r) == RECORD_KEYS and r["repeats"] == 1
        assert all(math.isfinite(r[k]) and r[k] > 0 for k in RECORD_KEYS - {"variant", "T",
                                                                            "repeats"})

    text = (tmp_path / "attention_variants.md").read_text()
    assert "| **multi_head** | exact (baseline) |" in text and f"| {other} |" in text
    assert "## Notes" in text and "std ~2.5" in text
    assert (tmp_path / "attention_variants.png").stat().st_size > 1000
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporaries

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    points = [line for line in lines if "T" in line]
    assert len(points) == len(saved["records"]) and len(lines) == len(points) + 3


def test_rnn_era_mechanisms_are_left_out_unless_named() -> None:
    assert "additive" not in default_names() and "multiplicative" not in default_names()
    labels = [e.label for e in select_entries(AttentionBenchSettings(**TINY))]
    assert labels[:2] == ["multi_head", "multi_head:reference"]
    assert "additive" not in labels
    named = select_entries(AttentionBenchSettings(names=["additive", "additive"], unfused=False,
                                                  **TINY))
    assert [e.label for e in named] == ["multi_head", "additive"]


def test_exponent_fit_on_synthetic_power_laws() -> None:
    lengths = [256, 512, 1024, 2048, 4096]
    assert fit_exponent({n: 3e-6 * n**2 for n in lengths}) == pytest.approx(2.0)
    assert fit_exponent({n: 0.5 * n for n in lengths}) == pytest.approx(1.0)
    # only the largest points count: a constant floor at small T does not bend the fit
    floor = {16: 5.0, 32: 5.0, **{n: 1e-3 * n for n in lengths}}
    assert fit_exponent(floor, last=4) == pytest.approx(1.0)
    assert fit_exponent({256: 1.0}) is None


def test_crossover_on_synthetic_numbers() -> None:
    exact = {256: 1.0, 512: 4.0, 1024: 16.0, 2048: 64.0}
    linear = {256: 8.0, 512: 16.0, 1024: 32.0, 2048: 64.0 - 1}
    assert crossover(linear, exact) == {"length": 2048, "text": "T=2048"}
    assert crossover({n: v / 2 for n, v in exact.items()}, exact)["length"] == 256
    # faster at 512 only, slower again later: not a crossover
    bumpy = {256: 2.0, 512: 3.0, 1024: 20.0, 2048: 70.0}
    assert crossover(bumpy, exact) == {"length": None, "text": "never up to T=2048"}
    # a variant that stopped at 1024 is compared where both ran, and says so
    stopped = {256: 2.0, 512: 3.0, 1024: 8.0}
    assert crossover(stopped, exact) == {"length": 512,
                                         "text": "T=512 (compared up to T=1024)"}


def test_stop_rules_time_budget_and_extrapolated_memory() -> None:
    s = AttentionBenchSettings(time_budget=1.0, max_gib=1.0)
    slow = {1024: {"train_ms": 1500.0, "train_peak_mib": 10.0}}
    assert "took 1.5 s at T=1024, over the time budget of 1 s" in stop_reason(s, slow, 1024, 2048)
    # quadratic memory: 300 MiB at 2048 after 75 MiB at 1024 -> 1.2 GiB at 4096
    grows = {1024: {"train_ms": 1.0, "train_peak_mib": 75.0},
             2048: {"train_ms": 1.0, "train_peak_mib": 300.0}}
    reason = stop_reason(s, grows, 2048, 4096)
    assert "T^2.00" in reason and "1.2 GiB at T=4096" in reason and "cap of 1 GiB" in reason
    linear = {1024: {"train_ms": 1.0, "train_peak_mib": 150.0},
              2048: {"train_ms": 1.0, "train_peak_mib": 300.0}}
    assert stop_reason(s, linear, 2048, 4096) is None


def test_a_variant_stops_and_says_where_and_why(tmp_path: Path) -> None:
    s = AttentionBenchSettings(out=str(tmp_path), names=["multi_head"], time_budget=1e-9,
                               **{**TINY, "lengths": [16, 32, 64]})
    results = run_attention_bench(s)
    for info in results["variants"].values():
        assert info["stopped_at"] == 32 and info["measured_lengths"] == [16]
        assert info["stopped"].startswith("stopped at T=32: a fwd+bwd step took")
    assert "stopped at T=32" in (tmp_path / "attention_variants.md").read_text()


def test_a_variant_that_raises_is_recorded_not_fatal(tmp_path: Path, monkeypatch) -> None:
    real = measure.build_module

    def build(name, extra, s, T, seed):
        if extra.get("kernel") == "reference" and T == 32:
            raise RuntimeError("out of memory (simulated)")
        return real(name, extra, s, T, seed)

    monkeypatch.setattr(measure, "build_module", build)
    results = run_attention_bench(AttentionBenchSettings(out=str(tmp_path), names=["multi_head"],
                                                         **TINY))
    info = results["variants"]["multi_head:reference"]
    assert info["stopped"] == ("stopped at T=32: build raised RuntimeError: out of memory "
                               "(simulated)")
    assert info["measured_lengths"] == [16]
    assert results["variants"]["multi_head"]["measured_lengths"] == [16, 32]


def test_exact_attention_has_no_error_against_itself() -> None:
    s = AttentionBenchSettings(**TINY)
    sdpa = approximation_error("multi_head", {"kernel": "sdpa"}, s)
    reference = approximation_error("multi_head", {"kernel": "reference"}, s)
    assert sdpa["value"] < 1e-5 and reference["value"] < 1e-6
    assert len(sdpa["per_seed"]) == 2 and sdpa["reason"] is None
    assert sdpa["score_std"] == pytest.approx(2.5, rel=1e-3)  # peaked, not uniform, attention


class ExactEfficient(EfficientAttention):
    """Stand-in: exact softmax attention behind EfficientAttention, no budget knob."""

    complexity = "time O(T S Dh), memory O(T S)"

    def attend(self, q, k, v, *, key_keep, mask, causal, need_weights):
        return AF.scaled_dot_product_attention(q, k, v, causal=causal)


class SharedQKExact(ExactEfficient):
    """Stand-in for Reformer's shared projection: K = X W^Q, no k_proj."""

    shared_qk = True
    budget_knob = "n_hashes"


@pytest.fixture
def stand_ins(monkeypatch):
    """Register the stand-ins for one test only (the registry is restored afterwards)."""
    monkeypatch.setitem(ATTENTION._entries, "test_exact_kernel", ExactEfficient)
    monkeypatch.setitem(ATTENTION._entries, "test_shared_qk", SharedQKExact)


def test_shared_query_key_is_compared_with_k_proj_copied_from_q_proj(stand_ins) -> None:
    error = approximation_error("test_shared_qk", {}, AttentionBenchSettings(**TINY))
    assert "k_proj := q_proj" in error["note"]
    assert error["value"] < 1e-5 and error["score_std"] == pytest.approx(2.5, rel=1e-3)


def test_a_variant_without_budget_knob_is_labelled_a_different_kernel(stand_ins) -> None:
    assert describe(Entry("test_exact_kernel", "test_exact_kernel"))["kind"] == (
        "different kernel, not an approximation")
    assert describe(Entry("test_shared_qk", "test_shared_qk"))["kind"] == (
        "approximation (knob: n_hashes)")
    error = approximation_error("test_exact_kernel", {}, AttentionBenchSettings(**TINY))
    assert "not an approximation" in error["note"] and error["value"] < 1e-5


def test_synthesizer_error_is_none_with_a_reason() -> None:
    error = approximation_error("synthesizer", {}, AttentionBenchSettings(**TINY))
    assert error["value"] is None and "without query-key dot products" in error["reason"]


def test_error_is_none_with_a_reason_without_multi_head_projections() -> None:
    error = approximation_error("additive", {}, AttentionBenchSettings(**TINY))
    assert error["value"] is None and "no exact attention" in error["reason"]


@pytest.mark.parametrize("overrides, match", [
    ({"names": ["no_such_attention"]}, r"names must be registered.*unknown: 'no_such_attention'"),
    ({"names": []}, "names must be registered"),
    ({"lengths": [256, 0]}, r"lengths must be a non-empty list of positive ints, got \[0, 256\]"),
    ({"lengths": [-8]}, "lengths must be"),
    ({"lengths": []}, "lengths must be"),
    ({"repeats": 0}, "repeats must be a positive int, got 0"),
    ({"time_budget": 0}, "time_budget must be a positive number, got 0"),
    ({"d_model": 10, "n_heads": 4}, r"d_model \(10\) must be divisible by n_heads \(4\)"),
    ({"device": "tpu"}, "device must be 'cpu' or 'cuda', got 'tpu'"),
])
def test_bad_settings_raise_clear_errors(overrides, match) -> None:
    with pytest.raises(ValueError, match=match):
        AttentionBenchSettings(**overrides)


def test_lengths_need_not_be_powers_of_two() -> None:
    assert AttentionBenchSettings(lengths=[300, 100, 300]).lengths == [100, 300]


def test_cli_runs_and_reports_errors(tmp_path: Path, capsys) -> None:
    code = main(["bench", "attention", "--names", "multi_head", "--no-unfused", "--lengths", "16",
                 "24", "--repeats", "1", "--d-model", "16", "--n-heads", "2",
                 "--error-length", "16", "--error-seeds", "1", "--out", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "# Attention variants vs exact attention, measured" in out
    saved = json.loads((tmp_path / "attention_variants.json").read_text())
    assert list(saved["variants"]) == ["multi_head"]
    assert main(["bench", "attention", "--names", "nope", "--out", str(tmp_path)]) == 2
    assert "names must be registered" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "attention", "--lengths", "0"])
    assert "expected a positive integer, got 0" in capsys.readouterr().err
    assert "multi_head" in ATTENTION
