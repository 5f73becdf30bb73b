"""Mixture of experts against dense language models on this CPU (issue 22, item 5): is a sparse
model "4-7x more efficient" to train, as Switch Transformers report (Fedus et al. 2022, fig. 1
and sec. 2.2: up to 7x faster to the same quality than T5-Base, 64-128 experts on TPUs)?

One LLaMA shape from `attnlab scaling`'s sizes (default 443k non-embedding parameters) trained
by the LM task on builtin:web (characters), three ways at EQUAL ACTIVE parameters and EQUAL
steps: dense; 8 experts top-1 (Switch) with experts of the dense d_ff; 8 experts top-2
(Mixtral) with experts of d_ff / 2. Then at EQUAL WALL-CLOCK: the dense model again with the
steps each MoE run's training time buys it (steps x MoE seconds / dense seconds, its own
cosine schedule). Over 3 seeds: validation loss (fixed windows of the valid books, next-token
loss alone) and test loss (the test books), tokens/s, the step at which each MoE run reaches
the dense run's final loss (its speed-up in steps and in time), and memory: the peak bytes
allocated by one training step (torch profiler), the parameter and AdamW state bytes, and the
process's peak RSS.

    python benchmarks/moe_vs_dense.py                 # 3 seeds x 5 runs: ~70 min, 1 thread
    python benchmarks/moe_vs_dense.py --size 990k --steps 2000
    python benchmarks/moe_vs_dense.py --quick         # smoke test: 13k, 30 steps, 1 seed

Run it alone (timings). Run folders go under --out (finished runs are reused when the command
is repeated); the record goes to benchmarks/results/moe_vs_dense.json (--quick: beside the
runs, never over the measured record).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attnlab.evaluation.machine import record_header, write_record
from attnlab.studies.compare.throughput import peak_bytes
from attnlab.studies.scaling.sweep import (
    SIZE_NAMES,
    RunSpec,
    ScalingSettings,
    count_parameters,
    run_record,
    run_state,
    size_named,
    train_run,
)
from attnlab.version import __version__

SCRIPT = "benchmarks/moe_vs_dense.py"
RESULT = Path(__file__).resolve().parent / "results" / "moe_vs_dense.json"
EXPERTS = 8
CLAIM = ("Switch Transformers (Fedus et al. 2022): 'up to 7x increases in pre-training speed' "
         "with the same computational resources (T5-Base vs Switch-Base, 64-128 experts, "
         "TPU v3, 2^20-token batches); the issue's seed: 4-7x more efficient training")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=SIZE_NAMES, default=None, help="model shape (443k)")
    p.add_argument("--steps", type=int, default=None, help="steps of the equal-step runs (1500)")
    p.add_argument("--seeds", type=int, default=None, help="seeds (3)")
    p.add_argument("--text", default="builtin:web", help="training text (builtin:web)")
    p.add_argument("--out", default=None, help="run folders (runs/moe-vs-dense)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: size 13k, 30 steps of 1,024 tokens, 1 seed")
    p.add_argument("--result", default=None, help="where the record goes")
    p.add_argument("--note", default="", help="how it was run (what else ran), kept")
    return p.parse_args(argv)


def settings_for(args: argparse.Namespace, seed: int) -> ScalingSettings:
    if args.quick:
        return ScalingSettings.quick(text=args.text, out=args.out, seed=seed, valid_windows=16,
                                     evaluations=4, experts=EXPERTS)
    return ScalingSettings(text=args.text, out=args.out, seed=seed, batch_size=16,
                           block_size=128, evaluations=10, valid_windows=256, experts=EXPERTS)


def train(s: ScalingSettings, spec: RunSpec) -> dict[str, Any]:
    """Train one run (reused when finished with the same settings) and return its record."""
    settings = s.run_settings(spec)
    folder = Path(settings.out)
    state = run_state(folder, settings)
    if state != "done":
        train_run(settings, state, progress=True)
    record = run_record(folder)
    assert record is not None, f"{folder} has no finished run"
    return record


def memory(s: ScalingSettings, spec: RunSpec, vocab_size: int) -> dict[str, int]:
    """Bytes of one training step (after a warm-up step that creates AdamW's state), the
    parameters and AdamW's two moments."""
    from attnlab.models import build_model

    torch.manual_seed(0)
    model = build_model("llama-tiny", vocab_size=vocab_size, **spec.model_overrides())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = torch.randint(0, vocab_size, (s.batch_size, s.block_size + 1))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        model(ids, labels=ids).loss.backward()
        optimizer.step()

    step()
    parameters = sum(p.numel() * p.element_size() for p in model.parameters())
    return {"train_step_peak_bytes": peak_bytes(step), "parameter_bytes": parameters,
            "adamw_state_bytes": 2 * parameters, "batch": s.batch_size, "block": s.block_size}


def reach_step(curve: list[dict[str, Any]], target: float) -> float | None:
    """The first step at which the curve's loss is <= target (linear between evaluations)."""
    previous = None
    for point in curve:
        if point["valid_loss"] <= target:
            if previous is None:
                return float(point["step"])
            return float(np.interp(target, [point["valid_loss"], previous["valid_loss"]],
                                   [point["step"], previous["step"]]))
        previous = point
    return None


def spread(values: list[float]) -> dict[str, float] | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values)}


def summary_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    by: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by.setdefault(run["variant"], []).append(run)
    return {variant: {key: spread([r.get(key) for r in rows])
                      for key in ("valid_loss", "test_loss", "tokens_per_second",
                                  "train_seconds", "steps", "speedup_steps", "speedup_time")}
            for variant, rows in by.items()}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    size = size_named(args.size or ("13k" if args.quick else "443k"))
    steps = args.steps or (30 if args.quick else 1500)
    seeds = args.seeds or (1 if args.quick else 3)
    args.out = args.out or ("runs/moe-vs-dense-quick" if args.quick else "runs/moe-vs-dense")
    result = Path(args.result) if args.result else (
        Path(args.out) / "moe_vs_dense_quick.json" if args.quick else RESULT)
    header = record_header(SCRIPT, sys.argv[1:] if argv is None else argv)
    record: dict[str, Any] = {
        **header, "attnlab": __version__, "note": args.note, "claim": CLAIM,
        "threads": args.threads, "size": size.name, "steps": steps, "seeds": seeds,
        "experts": EXPERTS, "text": args.text,
        "params": {"dense": count_parameters(RunSpec(size, steps).model_overrides()),
                   **{f"moe-top{k}": count_parameters(RunSpec(size, steps, k, EXPERTS)
                                                      .model_overrides()) for k in (1, 2)}},
        "runs": []}
    start = time.perf_counter()
    for seed in range(1, seeds + 1):
        s = settings_for(args, seed)
        s.out = str(Path(args.out) / f"seed{seed}")
        dense = {**train(s, RunSpec(size, steps)), "variant": "dense"}
        record["runs"].append(dense)
        for k in (1, 2):
            moe = {**train(s, RunSpec(size, steps, k, EXPERTS)), "variant": f"moe-top{k}"}
            at = reach_step(moe["curve"], dense["valid_loss"])
            moe["reaches_dense_loss_at_step"] = at
            moe["speedup_steps"] = steps / at if at else None
            moe["speedup_time"] = (steps / at * moe["tokens_per_second"]
                                   / dense["tokens_per_second"] if at else None)
            record["runs"].append(moe)
            # the steps the MoE run's training time buys the dense model, at each one's
            # measured training speed (train_seconds is rounded to 0.1 s; tokens/s is not)
            equal_steps = max(2, round(steps * dense["tokens_per_second"]
                                       / moe["tokens_per_second"]))
            matched = {**train(s, RunSpec(size, equal_steps)),
                       "variant": f"dense-time-of-top{k}",
                       "moe_train_seconds": moe["train_seconds"]}
            record["runs"].append(matched)
            record["summary"] = summary_of(record["runs"])
            write_record(result, record)
    vocab = dense["vocab_size"] or 256
    record["memory"] = {"dense": memory(s, RunSpec(size, steps), vocab),
                        **{f"moe-top{k}": memory(s, RunSpec(size, steps, k, EXPERTS), vocab)
                           for k in (1, 2)},
                        "process_peak_rss_bytes": resource.getrusage(
                            resource.RUSAGE_SELF).ru_maxrss * 1024}
    record["summary"] = summary_of(record["runs"])
    record["wall_seconds"] = round(time.perf_counter() - start, 1)
    write_record(result, record)
    for variant, figures in record["summary"].items():
        loss, speed = figures["valid_loss"], figures["tokens_per_second"]
        print(f"{variant:>18}: valid loss {loss['mean']:.4f} +- {loss['std']:.4f}, "
              f"{speed['mean']:.0f} tokens/s, {figures['steps']['mean']:.0f} steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
