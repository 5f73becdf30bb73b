"""`attnlab bench attention`: every registered attention variant against exact multi-head
attention (Vaswani et al., 2017) on this machine: forward and forward + backward time, peak
memory, fitted scaling exponent, crossover length and approximation error vs sequence length.

The efficient variants (sliding window, Longformer, BigBird, Linformer, Performer, Reformer,
...) promise sub-quadratic cost. Here each one runs interleaved with exact attention on the
fused "sdpa" kernel (the baseline) and on the unfused "reference" kernel (context), so the
report says at which length, if any, the promise pays on this machine.

Method (also written into the results file):
- time: median over `repeats` calls after one warm-up call per module; the modules of one
  length run round-robin, the order reversed every other round, so a noisy moment of a shared
  machine hits them all alike. "forward": eval mode under no_grad. "fwd+bwd": train mode, the
  gradient of a fixed random projection <output, R> w.r.t. the input and all parameters.
- memory: the allocator's high-water mark during one call beyond what was allocated before
  (CPU: profiler allocation events, attnlab.studies.compare.throughput.peak_bytes; CUDA:
  torch.cuda.max_memory_allocated). Weights and the input are not counted.
- a variant stops at the next length once a fwd+bwd step took longer than `time_budget`, once
  its peak extrapolated to the next length (local growth exponent, at least 1) exceeds
  `max_gib`, or when it raised; the reason is recorded.
The timing and memory calls are in attention_bench_measure.py, the error against exact
attention in attention_bench_error.py, the Markdown and plots in attention_bench_report.py.
"""

from __future__ import annotations

import gc
import inspect
import os
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from attnlab.errors import ConfigError
from attnlab.evaluation.machine import machine_info
from attnlab.nn.attention import ATTENTION
from attnlab.nn.attention.recurrent_era import RecurrentEraAttention
from attnlab.studies.attention_bench_error import approximation_error
from attnlab.studies.attention_bench_measure import LengthRun, next_length, stop_reason
from attnlab.studies.compare.complexity import growth

BASELINE = "multi_head"  # exact attention, fused sdpa kernel: every ratio is against it
UNFUSED = "multi_head:reference"  # exact attention, the paper's four steps (context)
METRICS = ("forward_ms", "train_ms", "forward_peak_mib", "train_peak_mib")
METHODS = {
    "time": "median ms over the repeats after one warm-up call; modules of one length run "
            "round-robin, order reversed every other round. forward: eval mode, no_grad. "
            "fwd+bwd (train_ms): train mode, gradient of <output, R> (R fixed random) w.r.t. "
            "the input and all parameters.",
    "memory": "high-water mark of bytes allocated during one call beyond those allocated before "
              "it (CPU: PyTorch profiler allocation events; CUDA: max_memory_allocated); "
              "weights and input excluded.",
    "exponent": "least-squares slope of log(value) vs log(T) over the largest measured lengths "
                "(settings.exponent_points of them).",
    "crossover": "smallest measured T from which the variant's median is below exact sdpa's at "
                 "every larger length measured by both.",
    "error": "||y - y_exact|| / ||y_exact||, mean over seeds, at settings.error_length; y_exact: "
             "MultiHeadAttention(kernel='reference') loaded with the variant's state_dict "
             "(strict=False); non-causal self-attention of N(0, 1) inputs, query projection "
             "scaled so the exact scores have std settings.score_std.",
}


@dataclass
class Entry:
    """One benchmarked module: a registry name plus fixed constructor arguments."""

    label: str
    name: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class AttentionBenchSettings:
    out: str = "runs/bench-attention"
    names: list[str] | None = None  # registry names; None: all but the RNN-era mechanisms
    lengths: list[int] = field(default_factory=lambda: [256 * 2**i for i in range(7)])
    repeats: int = 5
    time_budget: float = 20.0  # seconds per fwd+bwd step before a variant stops growing T
    max_gib: float = 6.0  # extrapolated peak memory cap
    d_model: int = 64
    n_heads: int = 4
    batch: int = 1
    device: str = "cpu"
    unfused: bool = True  # also run multi_head with the "reference" kernel
    error_length: int = 1024
    error_seeds: int = 3
    score_std: float = 2.5  # target std of the exact attention scores in the error inputs
    exponent_points: int = 4
    seed: int = 0

    @classmethod
    def quick(cls, **overrides: Any) -> AttentionBenchSettings:
        """A few minutes on 2 CPU cores: T <= 2048, 3 repeats, error at T=256."""
        values: dict[str, Any] = dict(lengths=[256, 512, 1024, 2048], repeats=3,
                                      time_budget=5.0, error_length=256)
        return cls(**{**values, **overrides})

    def __post_init__(self) -> None:
        self.lengths = sorted(set(self.lengths)) if isinstance(self.lengths, list | tuple) \
            else self.lengths
        if not isinstance(self.lengths, list) or not self.lengths or not all(
                _is_positive_int(n) for n in self.lengths):
            raise ConfigError(f"lengths must be a non-empty list of positive ints, "
                             f"got {self.lengths!r}")
        for name in ("repeats", "d_model", "n_heads", "batch", "error_length", "error_seeds"):
            if not _is_positive_int(getattr(self, name)):
                raise ConfigError(f"{name} must be a positive int, got {getattr(self, name)!r}")
        for name in ("time_budget", "max_gib", "score_std"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not value > 0:
                raise ConfigError(f"{name} must be a positive number, got {value!r}")
        if not _is_positive_int(self.exponent_points) or self.exponent_points < 2:
            raise ConfigError(f"exponent_points must be an int >= 2, got {self.exponent_points!r}")
        if self.d_model % self.n_heads:
            raise ConfigError(f"d_model ({self.d_model}) must be divisible by n_heads "
                             f"({self.n_heads})")
        if self.device not in ("cpu", "cuda"):
            raise ConfigError(f"device must be 'cpu' or 'cuda', got {self.device!r}")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device='cuda' but torch.cuda.is_available() is False")
        if self.names is not None:
            unknown = [n for n in self.names if n not in ATTENTION]
            if unknown or not self.names:
                raise ConfigError(f"names must be registered attentions "
                                 f"({', '.join(ATTENTION.names())}), got {self.names!r}"
                                 + (f" (unknown: {', '.join(map(repr, unknown))})"
                                    if unknown else ""))


def _is_positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def default_names() -> list[str]:
    """Every registered mechanism except the RNN-era ones (O(T S Da) score networks)."""
    return [n for n in ATTENTION.names()
            if not issubclass(ATTENTION.get(n), RecurrentEraAttention)]


def select_entries(s: AttentionBenchSettings) -> list[Entry]:
    """The baseline first, the unfused exact attention second, then the chosen variants."""
    entries = [Entry(BASELINE, "multi_head", {"kernel": "sdpa"})]
    if s.unfused:
        entries.append(Entry(UNFUSED, "multi_head", {"kernel": "reference"}))
    names = default_names() if s.names is None else list(dict.fromkeys(s.names))
    return entries + [Entry(n, n) for n in names if n != "multi_head"]


def fit_exponent(points: dict[int, float], last: int = 4) -> float | None:
    """Exponent b of value ~ T^b, least squares in log-log over the `last` largest T."""
    records = [{"n": n, "v": points[n]} for n in sorted(points)[-last:] if points[n] > 0]
    slope = growth(records, "v")
    return None if slope is None else round(slope, 3)


def crossover(variant: dict[int, float], baseline: dict[int, float]) -> dict[str, Any]:
    """Smallest T from which `variant` < `baseline` at every larger T measured by both."""
    common = sorted(set(variant) & set(baseline))
    if not common:
        return {"length": None, "text": "no common length"}
    start = None
    for n in reversed(common):
        if variant[n] >= baseline[n]:
            break
        start = n
    if start is None:
        return {"length": None, "text": f"never up to T={common[-1]}"}
    partial = common[-1] < max(baseline)  # the variant stopped before the baseline did
    return {"length": start, "text": f"T={start}" + (f" (compared up to T={common[-1]})"
                                                      if partial else "")}


def describe(entry: Entry) -> dict[str, Any]:
    """What the class declares: complexity, budget knob, capabilities, and what kind it is."""
    cls = ATTENTION.get(entry.name)
    knob = getattr(cls, "budget_knob", None)
    if entry.name == "multi_head":
        fused = entry.label == BASELINE
        kind = "exact (baseline)" if fused else "exact, unfused"
        complexity = "time O(T S Dh), memory " + (
            "O(T): fused kernel, no T x S scores stored" if fused else "O(T S)")
    else:
        complexity = getattr(cls, "complexity", "") or "-"
        if issubclass(cls, RecurrentEraAttention):
            kind = "RNN-era score network, O(T S Da)"
        elif knob is not None:
            kind = f"approximation (knob: {knob})"
        else:
            kind = "different kernel, not an approximation"
    return {"name": entry.name, "constructor": entry.extra, "class": cls.__name__, "kind": kind,
            "complexity": complexity, "budget_knob": knob,
            "builds_with_max_length": "max_length" in inspect.signature(cls).parameters,
            **{flag: getattr(cls, flag, True)
               for flag in ("supports_causal", "supports_mask", "supports_cross")},
            "stopped": None, "stopped_at": None}


def summarize(results: dict[str, Any], s: AttentionBenchSettings) -> None:
    """Per variant: exponents, crossover and ratio vs the baseline (in place)."""
    by: dict[str, dict[int, dict[str, Any]]] = {}
    for r in results["records"]:
        by.setdefault(r["variant"], {})[r["T"]] = r
    base = by.get(BASELINE, {})
    for label, info in results["variants"].items():
        rows = by.get(label, {})
        info["measured_lengths"] = sorted(rows)
        info["exponents"] = {m: fit_exponent({n: r[m] for n, r in rows.items()},
                                             s.exponent_points) for m in METRICS}
        info["crossover"] = None if label == BASELINE else {
            m: crossover({n: r[m] for n, r in rows.items()}, {n: r[m] for n, r in base.items()})
            for m in ("forward_ms", "train_ms")}
        common = sorted(set(rows) & set(base))
        info["ratio_vs_baseline"] = None if not common else {
            "T": common[-1], **{m: round(rows[common[-1]][m] / base[common[-1]][m], 3)
                                for m in METRICS if base[common[-1]][m] > 0}}


def run_attention_bench(s: AttentionBenchSettings, *,
                        on_record: Callable[[dict[str, Any]], None] | None = None,
                        command: str | None = None) -> dict[str, Any]:
    """Measure every selected entry at every length, then the errors; write JSON, MD and PNG
    into `s.out` (the JSON after every length, so an interrupted run keeps what finished)."""
    from attnlab.studies.attention_bench_report import write_json, write_report

    started = time.perf_counter()
    entries = select_entries(s)
    results: dict[str, Any] = {
        "benchmark": "attention_variants",
        "command": command or shlex.join(["attnlab", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine_info(),
        "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "settings": asdict(s), "methods": METHODS, "baseline": BASELINE,
        "variants": {e.label: describe(e) for e in entries}, "records": [],
    }
    history: dict[str, dict[int, dict[str, Any]]] = {e.label: {} for e in entries}
    active = list(entries)

    def stop(entry: Entry, T: int, reason: str) -> None:
        info = results["variants"][entry.label]
        if info["stopped"] is None:
            info.update(stopped=f"stopped at T={T}: {reason}", stopped_at=T)

    with tqdm(total=len(s.lengths) * len(entries), desc="bench attention", unit="pt",
              file=sys.stderr) as bar:
        for T in s.lengths:
            run = LengthRun(s, T, active, lambda e, why, T=T: stop(e, T, why))
            samples = run.time(bar)
            for entry in entries:
                if entry.label in samples and entry.label in run.modules:
                    bar.set_postfix_str(f"T={T} memory {entry.label}")
                    memory = run.memory(entry.label)
                    if memory is not None:
                        record = {"variant": entry.label, "T": T, **{
                            k: round(statistics.median(v), 4) for k, v in
                            samples[entry.label].items()}, **memory,
                            "repeats": len(samples[entry.label]["train_ms"])}
                        results["records"].append(record)
                        history[entry.label][T] = record
                        if on_record:
                            on_record({"benchmark": "attention_variants", **record})
                bar.update(1)
            del run  # free this length's modules and tensors before the next, larger one
            gc.collect()
            if s.device == "cuda":
                torch.cuda.empty_cache()
            following = next_length(s.lengths, T)
            for entry in list(active):
                why = None if following is None or T not in history[entry.label] \
                    else stop_reason(s, history[entry.label], T, following)
                if why is not None:
                    stop(entry, following, why)
                if results["variants"][entry.label]["stopped"] is not None:
                    active.remove(entry)
            summarize(results, s)
            write_json(results, s.out)
        bar.set_postfix_str("approximation error")
        for entry in entries:
            results["variants"][entry.label]["error"] = approximation_error(entry.name,
                                                                            entry.extra, s)
    results["wall_s"] = round(time.perf_counter() - started, 1)
    results["loadavg_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    summarize(results, s)
    if on_record:
        for label, info in results["variants"].items():
            on_record({"benchmark": "attention_variants", "variant": label, **{
                k: info[k] for k in ("kind", "exponents", "crossover", "ratio_vs_baseline",
                                     "error", "stopped")}})
    write_report(results, s.out)
    return results
