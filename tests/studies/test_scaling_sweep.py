"""The scaling sweep (studies/scaling/sweep.py): sizes named by their counted non-embedding
parameters, MoE points at equal active parameters, the run settings handed to the LM task,
fixed-window validation, reuse / resume / replace of run folders, and the report of a sweep
(fits, holdout, MoE rows, plots) on synthetic run records."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from attnlab.errors import ConfigError
from attnlab.studies.scaling import sweep
from attnlab.studies.scaling.report import analyse, markdown, write_report
from attnlab.studies.scaling.sweep import (
    SIZES,
    RunSpec,
    ScalingSettings,
    collect,
    count_parameters,
    parameter_counts,
    run_state,
    run_sweep,
    size_named,
    size_of,
)
from attnlab.tasks.language_model import LMSettings


def label(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{round(n / 1e3)}k"


def test_sizes_are_named_by_their_non_embedding_parameters_and_span_the_range():
    counts = [count_parameters(size.overrides(), vocab_size=100)["non_embedding"]
              for size in SIZES]
    assert [label(n) for n in counts] == [size.name for size in SIZES]
    assert len(SIZES) >= 6 and counts[0] < 20_000 and counts[-1] > 4_000_000
    assert counts == sorted(counts)
    # a top-2 expert (d_ff / 2 wide) keeps 16-byte rows, as torch's grouped matmul needs
    assert all(size.d_ff % 8 == 0 for size in SIZES)
    # the vocabulary changes only the embedding and the head
    assert count_parameters(SIZES[0].overrides(), 5000)["non_embedding"] == counts[0]


def test_parameter_counts_leave_out_embeddings_and_count_active_experts():
    class Fake(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed_tokens = nn.Embedding(10, 4)  # 40
            self.lm_head = nn.Linear(4, 10, bias=False)  # 40
            self.block = nn.Module()
            self.block.router = nn.Linear(4, 8, bias=False)  # 32
            self.block.experts = nn.Module()
            self.block.experts.up_proj = nn.Parameter(torch.zeros(8, 6, 4))  # 192
            self.norm = nn.Parameter(torch.ones(4))  # 4

    counts = parameter_counts(Fake(), {"experts": 8, "top_k": 2})
    assert counts == {"total": 308, "non_embedding": 228, "active": 228 - 144}


def test_run_specs_and_the_settings_given_to_the_lm_task():
    s = ScalingSettings.quick(sizes=["13k", "56k"], moe_sizes=["56k"], steps=[40], out="o")
    specs = s.specs()
    assert [spec.name for spec in specs] == ["dense-13k-40", "dense-56k-40",
                                             "moe8-top1-56k-40", "moe8-top2-56k-40"]
    top2 = s.run_settings(specs[3])
    assert isinstance(top2, LMSettings) and top2.preset == "llama-tiny"
    assert top2.model_overrides == {"d_model": 48, "n_layers": 2, "n_heads": 3, "n_kv_heads": 3,
                                    "d_ff": 64, "moe": {"experts": 8, "top_k": 2}}
    assert top2.out == str(Path("o") / "runs" / "moe8-top2-56k-40")
    assert (top2.max_steps, top2.warmup_steps, top2.evaluations) == (40, 4, 8)
    assert top2.block_size * top2.batch_size == s.tokens_per_step == 1024
    dense = s.run_settings(specs[1])
    assert dense.model_overrides["d_ff"] == 128 and "moe" not in dense.model_overrides
    assert 0.001 < dense.lr < 0.002  # Kaplan et al.'s LR(N) at 56k
    # a run folder's shape names its size back; another d_ff is no size of the sweep
    assert size_of(top2.model_overrides) == size_of(dense.model_overrides) == "56k"
    assert size_of({**dense.model_overrides, "d_ff": 130}) is None


@pytest.mark.skipif(not sweep.moe_supported(), reason="llama config has no moe field yet")
def test_moe_points_match_the_dense_active_parameters():
    size = size_named("443k")
    dense = count_parameters(RunSpec(size, 10).model_overrides())
    for k in (1, 2):
        moe = count_parameters(RunSpec(size, 10, k).model_overrides())
        router = 8 * size.d_model * size.n_layers
        assert moe["active"] == dense["active"] + router
        assert moe["non_embedding"] > 2.5 * dense["non_embedding"]


def test_bad_settings_are_refused_by_name():
    with pytest.raises(ConfigError, match="unknown size '3B'"):
        ScalingSettings(sizes=["3B"])
    with pytest.raises(ConfigError, match="steps must be integers >= 2"):
        ScalingSettings(steps=[1])
    with pytest.raises(ConfigError, match="moe_top_k must be 1 and/or 2"):
        ScalingSettings(moe_top_k=[3])
    with pytest.raises(ConfigError, match="valid_windows must be a positive integer"):
        ScalingSettings(valid_windows=0)


def fake_run(settings: LMSettings, losses: list[float] | None = None) -> None:
    """What run_task leaves in a finished folder, with a made-up curve."""
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    values = json.loads(json.dumps(__import__("dataclasses").asdict(settings)))
    (out / "train_settings.json").write_text(json.dumps(values))
    n = count_parameters(settings.model_overrides)["active"]
    steps = settings.max_steps
    evaluations = [{"step": round(steps * (i + 1) / 4),
                    "valid_loss": 1.2 + 30 / n ** 0.3 + 4 / (i + 1) ** 0.5} for i in range(4)]
    (out / "metrics.json").write_text(json.dumps({
        "evaluations": evaluations, "steps": steps, "train_seconds": steps * n / 1e6,
        "train_tokens_per_second": 1e6 / n, "train_stream_tokens": 100_000}))
    (out / "config.json").write_text("{}")


def test_finished_runs_are_reused_started_ones_resumed_changed_ones_replaced(tmp_path):
    s = ScalingSettings.quick(sizes=["13k", "56k"], steps=[8], moe=False, out=str(tmp_path))
    calls: list[tuple[str, str]] = []

    def runner(settings, state, progress):
        calls.append((Path(settings.out).name, state))
        fake_run(settings)

    results = run_sweep(s, progress=False, runner=runner)
    assert calls == [("dense-13k-8", "new"), ("dense-56k-8", "new")]
    assert set(results["runs"]) == {"dense-13k-8", "dense-56k-8"}
    run = results["runs"]["dense-56k-8"]
    assert run["curve"][-1]["tokens"] == 8 * 1024 == run["D"] and run["N"] == 55_536
    assert json.loads((tmp_path / "results.json").read_text())["runs"].keys() == {
        "dense-13k-8", "dense-56k-8"}
    calls.clear()
    run_sweep(s, progress=False, runner=runner)
    assert calls == []  # both finished with these settings
    (tmp_path / "runs" / "dense-56k-8" / "metrics.json").unlink()
    run_sweep(s, progress=False, runner=runner)
    assert calls == [("dense-56k-8", "resume")]
    calls.clear()
    changed = ScalingSettings.quick(sizes=["13k"], steps=[8], moe=False, out=str(tmp_path),
                                    lr=0.01)
    assert run_state(tmp_path / "runs" / "dense-13k-8",
                     changed.run_settings(changed.specs()[0])) == "replace"
    other_windows = ScalingSettings.quick(sizes=["13k"], steps=[8], moe=False,
                                          out=str(tmp_path), valid_windows=7)
    run_sweep(other_windows, progress=False, runner=runner)
    assert calls == [("dense-13k-8", "replace")]


def synthetic_results(tmp_path: Path, moe: bool) -> dict:
    s = ScalingSettings.quick(sizes=["13k", "56k", "151k", "443k", "990k"], steps=[20, 40],
                              moe=moe, out=str(tmp_path), bootstrap=20)
    for spec in s.specs():
        fake_run(s.run_settings(spec))
    return collect(s)


def test_the_report_fits_holds_out_the_largest_and_compares_moe(tmp_path):
    results = synthetic_results(tmp_path, moe=sweep.moe_supported())
    report = analyse(results, samples=20)
    size_law = report["size_law"]
    assert len(size_law["points"]) == 5 and all(p["D"] == 40 * 1024
                                                for p in size_law["points"])
    # the made-up curves follow 30 / N^0.3 in N at fixed D, exactly: a narrow interval
    assert size_law["law"]["alpha"] == pytest.approx(0.3, abs=0.02)
    ci = size_law["ci"]["alpha"]
    assert ci["high"] - ci["low"] < 0.01 and ci["low"] == pytest.approx(0.3, abs=0.02)
    assert report["chinchilla"]["runs"] == 10 and "ci" in report["chinchilla"]
    assert "ci" in report["chinchilla_finals"]  # two budgets: final points alone too
    holdout = report["holdout"]
    assert holdout["held_out"]["name"] == "dense-990k-40"
    assert holdout["size_law"]["predicted"] == pytest.approx(holdout["held_out"]["measured"],
                                                             rel=0.01)
    assert report["frontier"]["measured"]["compute"] and "fitted" in report["frontier"]
    if sweep.moe_supported():
        rows = {row["name"]: row for row in report["moe"]}
        assert set(rows) == {"moe8-top1-443k-40", "moe8-top2-443k-40"}
        row = rows["moe8-top1-443k-40"]
        assert row["dense"]["name"] == "dense-443k-40"
        assert math.isfinite(row["loss_difference"]) and row["speed_ratio"] > 0
    text = markdown(results, report)
    for heading in ("## Fitted laws", "## Prediction check", "Kaplan", "Hoffmann",
                    "## Why the exponents may differ"):
        assert heading in text


def test_write_report_writes_the_json_markdown_and_plots(tmp_path):
    results = synthetic_results(tmp_path, moe=False)
    write_report(results, tmp_path, samples=5)
    for name in ("report.json", "report.md", "loss_vs_compute.png", "loss_vs_n.png",
                 "loss_vs_d.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    saved = json.loads((tmp_path / "report.json").read_text())
    assert "draws" not in saved["size_law"] and saved["holdout"]["held_out"]


def test_too_few_sizes_skip_the_fits_with_a_reason(tmp_path):
    s = ScalingSettings.quick(sizes=["13k", "56k"], steps=[20], moe=False, out=str(tmp_path))
    for spec in s.specs():
        fake_run(s.run_settings(spec))
    report = analyse(collect(s), samples=5)
    assert report["size_law"] == {"skipped": "needs >= 3 sizes, got 2"}
    assert "skipped" in report["holdout"]
