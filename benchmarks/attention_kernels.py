"""Attention kernels side by side: forward time and peak memory vs sequence length, and the cost
of our multi-head module over calling torch SDPA by hand on the same projection weights.

    python benchmarks/attention_kernels.py           # T = 256 ... 8192, ~5 min on 2 idle cores
    python benchmarks/attention_kernels.py --quick   # T <= 1024, fewer repeats, < 60 s

1. kernel: four implementations of softmax(q k^T / sqrt(Dh)) v on (B, H, T, Dh) fp32 inputs
   (B=1, H=8, Dh=64 by default), full and causal:
     torch      torch.nn.functional.scaled_dot_product_attention, called directly (the baseline)
     sdpa       attnlab's "sdpa" kernel (torch SDPA behind our mask convention)
     reference  attnlab's "reference" kernel (the paper's four steps, nn/functional.py)
     naive      the textbook version written in this script: scores, masked_fill(-inf), softmax, @ v
   Time: median forward time under torch.inference_mode after one warm-up call; the
   implementations run round-robin so machine noise hits them alike. Peak memory: see
   `memory_method` in the results file (resident-set high-water growth of one call, measured in a
   child process). Points whose analytic peak exceeds --max-gib are skipped and say so.
   Each point records cpu_share (CPU time / (wall x threads) while timing): well below 1 means
   other work shared our cores and small-T times are inflated; the ratios suffer less.
2. module_overhead: MultiHeadAttention(d_model=512, n_heads=8, kernel="sdpa") vs the same
   module's q/k/v projections + reshape + F.scaled_dot_product_attention + out_proj written by
   hand, B=4, inference (forward) and training (forward + backward). The two sides alternate
   (AB BA AB ...) and the ratio ours/direct of the medians is reported; the target is <= 1.10.

Every figure is one JSON line on stdout; the command, date, machine and all records go to
OUT/attention_kernels.json and the plots to OUT/attention_kernels.png. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import datetime as dt
import functools
import gc
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from attnlab.nn.attention import ATTENTION, KERNELS

IMPLS = ("torch", "sdpa", "reference", "naive")  # torch first: the others are compared with it
SCRIPT = Path(__file__).resolve()
DEFAULT_OUT = SCRIPT.parent / "results"
OVERHEAD_TARGET = 1.10
MEMORY_METHOD = (
    "peak_mib: growth of the process resident-set high-water mark (VmHWM) during one forward "
    "call over the resident size just before it, so q, k, v are excluded and the output and "
    "every temporary (also those inside fused kernels) are included. Measured in a child "
    "process with glibc's mmap threshold pinned to 64 KiB (every large tensor is freshly mapped "
    "and returned to the OS when freed, so freed memory cannot hide a new allocation), after a "
    "full-size warm-up call, with the high-water mark reset via /proc/self/clear_refs before "
    "each measured call. est_peak_mib: analytic bytes of the tensors alive at the worst moment, "
    "read off the code (fused kernels: output + logsumexp + per-thread tiles, approximate)."
)


# ----------------------------------------------------------------------------- implementations
def naive_attention(q: Tensor, k: Tensor, v: Tensor, causal: bool) -> Tensor:
    """Textbook attention, as most tutorials write it (the mask is built per call, as ours is)."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (B, H, T, S)
    if causal:
        T, S = scores.shape[-2:]
        future = torch.ones(T, S, dtype=torch.bool).triu(1)  # (T, S), True = masked
        scores = scores.masked_fill(future, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v  # (B, H, T, Dh)


def attention(impl: str, q: Tensor, k: Tensor, v: Tensor, causal: bool) -> Tensor:
    if impl == "naive":
        return naive_attention(q, k, v, causal)
    if impl == "torch":
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    return KERNELS.get(impl)(q, k, v, causal=causal)[0]


def make_qkv(B: int, H: int, T: int, Dh: int, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed + T)
    return tuple(torch.randn(B, H, T, Dh, generator=g) for _ in range(3))  # 3 x (B, H, T, Dh)


def estimate_peak_bytes(impl: str, B: int, H: int, T: int, Dh: int, causal: bool) -> int:
    """Bytes alive at the worst moment of one fp32 call (inputs excluded), read off the code."""
    scores = B * H * T * T * 4  # one (B, H, T, T) fp32 tensor
    out = B * H * T * Dh * 4
    if impl == "naive":  # scores/sqrt(d) + (masked copy | softmax) + bool mask
        return 2 * scores + (T * T if causal else 0) + out
    if impl == "reference":
        # causal: the scaled scores, their masked copy, the softmax and its re-masked copy are all
        # referenced at once (masked_softmax keeps the caller's tensor alive), plus mask and ~mask.
        return (4 * scores + 2 * T * T if causal else 2 * scores) + out
    # CPU flash attention: output, logsumexp (B, H, T) and per-thread (q_block x kv_block) tiles
    q_block = 256 if T >= 768 else 64 if T >= 192 else 32
    tiles = torch.get_num_threads() * (q_block * 512 + q_block * Dh + 2 * q_block) * 4
    return out + B * H * T * 4 + tiles


# ----------------------------------------------------------------------------- timing
def time_round_robin(
    fns: dict[str, Callable[[], Any]], repeats: int, budget_s: float, min_repeats: int
) -> tuple[dict[str, list[float]], dict[str, Any], float]:
    """Per-call milliseconds of each function, called in turn (the first round is a warm-up).

    The number of timed rounds is what fits in `budget_s`, within [min_repeats, repeats].
    Returns (samples per name, the warm-up outputs, cpu_share): cpu_share is the process CPU
    time over wall time x torch threads during the timed rounds, ~1 on an idle machine and
    lower when other work took our cores (then small-T times inflate toward scheduler ticks).
    """
    warm: dict[str, Any] = {}
    start = time.perf_counter()
    for name, fn in fns.items():
        warm[name] = fn()
    round_s = time.perf_counter() - start
    n = max(min(min_repeats, repeats), min(repeats, int(budget_s / max(round_s, 1e-9))))
    samples: dict[str, list[float]] = {name: [] for name in fns}
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for i in range(n):
        order = list(fns.items()) if i % 2 == 0 else list(fns.items())[::-1]  # AB BA: no bias
        for name, fn in order:
            t0 = time.perf_counter()
            out = fn()
            samples[name].append((time.perf_counter() - t0) * 1e3)
            del out
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return samples, warm, cpu / max(wall * torch.get_num_threads(), 1e-9)


# ----------------------------------------------------------------------------- memory
def _proc_status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak_rss() -> bool:
    """Reset the kernel's resident high-water mark for this process (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def pin_malloc() -> Callable[[], None]:
    """Make glibc map every block >= 64 KiB on its own and unmap it on free; return a trimmer."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt(-3, 64 * 1024)  # M_MMAP_THRESHOLD (also stops the dynamic threshold)
        return lambda: libc.malloc_trim(0)
    except (OSError, AttributeError, TypeError):
        return lambda: None


def memory_child(points: list[dict[str, Any]], threads: int) -> None:
    """Child process: print the extra peak MiB of one call per point, one line each."""
    torch.set_num_threads(threads)
    trim = pin_malloc()
    can_reset = reset_peak_rss()
    for p in points:
        q, k, v = make_qkv(p["B"], p["H"], p["T"], p["Dh"])
        with torch.inference_mode():
            if can_reset:  # full-size warm-up, then forget its peak
                attention(p["impl"], q, k, v, p["causal"])
            else:  # one point per process: warm up small so the high-water mark stays low
                attention(p["impl"], q[..., :8, :], k[..., :8, :], v[..., :8, :], p["causal"])
            gc.collect()
            trim()
            reset_peak_rss()
            before = _proc_status_kib("VmRSS")
            out = attention(p["impl"], q, k, v, p["causal"])
            peak = _proc_status_kib("VmHWM")
            del out
        print(json.dumps(max(peak - before, 0) / 1024), flush=True)  # one line per point


def memory_method(skipped: bool) -> str:
    if skipped:
        return "not measured (--skip-memory)"
    if not Path("/proc/self/status").exists():
        return "not measured (no /proc on this system)"
    if not reset_peak_rss():
        return MEMORY_METHOD + (" Here /proc/self/clear_refs was not writable, so every point "
                                "ran in its own fresh child, warmed up on 8 tokens instead.")
    return MEMORY_METHOD


def measure_memory(points: list[dict[str, Any]], threads: int, bar: tqdm) -> list[float | None]:
    """Peak MiB per point, from one child process (or one per point if peaks cannot be reset)."""
    if not points or not Path("/proc/self/status").exists():
        return [None] * len(points)
    groups = [points] if reset_peak_rss() else [[p] for p in points]
    results: list[float | None] = []
    for group in groups:
        command = [sys.executable, str(SCRIPT), "--memory-child", json.dumps(group),
                   "--threads", str(threads)]
        got: list[float | None] = []
        with tempfile.TemporaryFile("w+") as errors:  # a file, so a chatty child cannot block
            with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors,
                                  text=True) as child:
                for line in child.stdout:
                    got.append(float(line))
                    bar.update(1)
            if child.returncode != 0:
                errors.seek(0)
                tqdm.write(f"memory child failed: {errors.read().strip()[-500:]}",
                           file=sys.stderr)
        bar.update(len(group) - len(got))
        results += got + [None] * (len(group) - len(got))
    return results


# ----------------------------------------------------------------------------- kernel bench
def kernel_bench(args: argparse.Namespace, bar: tqdm) -> list[dict[str, Any]]:
    B, H, Dh = args.batch_kernel, args.heads, args.head_dim
    records = []
    for T in args.lengths:
        q, k, v = make_qkv(B, H, T, Dh)
        for causal in (False, True):
            group = []
            for impl in IMPLS:
                est = estimate_peak_bytes(impl, B, H, T, Dh, causal)
                record = {"bench": "kernel", "impl": impl, "T": T, "causal": causal, "B": B,
                          "H": H, "Dh": Dh, "est_peak_mib": round(est / 2**20, 3)}
                if est > args.max_gib * 2**30:
                    record["skipped"] = (f"analytic peak {est / 2**30:.1f} GiB exceeds "
                                         f"--max-gib {args.max_gib:g}")
                group.append(record)
            run = [r["impl"] for r in group if "skipped" not in r]
            with torch.inference_mode():
                samples, warm, cpu_share = time_round_robin(
                    {i: functools.partial(attention, i, q, k, v, causal) for i in run},
                    args.repeats, args.budget, args.min_repeats)
            base = statistics.median(samples["torch"])
            for r in group:
                if "skipped" in r:
                    continue
                ms = statistics.median(samples[r["impl"]])
                r.update(ms=round(ms, 4), ratio_vs_torch_sdpa=round(ms / base, 3),
                         repeats=len(samples[r["impl"]]), cpu_share=round(cpu_share, 3),
                         max_abs_err_vs_torch=float((warm[r["impl"]] - warm["torch"]).abs().max()))
            del warm
            records += group
            bar.update(len(group))
    if not args.skip_memory:
        measured = [r for r in records if "skipped" not in r]
        points = [{k: r[k] for k in ("impl", "T", "causal", "B", "H", "Dh")} for r in measured]
        for r, mib in zip(measured, measure_memory(points, torch.get_num_threads(), bar),
                          strict=True):
            r["peak_mib"] = None if mib is None else round(mib, 3)
        base = {(r["T"], r["causal"]): r.get("peak_mib") for r in measured if r["impl"] == "torch"}
        for r in measured:
            ref = base.get((r["T"], r["causal"]))
            if r["peak_mib"] is not None and ref:
                r["mem_ratio_vs_torch_sdpa"] = round(r["peak_mib"] / ref, 2)
    for r in records:
        print(json.dumps(r), flush=True)
    return records


# ----------------------------------------------------------------------------- module overhead
def direct_forward(module: torch.nn.Module, x: Tensor, causal: bool) -> Tensor:
    """What one would write by hand with the module's own projection weights."""
    B, T, _ = x.shape
    H, Dh = module.n_heads, module.head_dim
    q = module.q_proj(x).view(B, T, H, Dh).transpose(1, 2)  # (B, H, T, Dh)
    k = module.k_proj(x).view(B, T, H, Dh).transpose(1, 2)  # (B, H, T, Dh)
    v = module.v_proj(x).view(B, T, H, Dh).transpose(1, 2)  # (B, H, T, Dh)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)  # (B, H, T, Dh)
    return module.out_proj(out.transpose(1, 2).reshape(B, T, H * Dh))  # (B, T, D)


def module_step(side: str, module: torch.nn.Module, x: Tensor, causal: bool,
                training: bool) -> None:
    """One timed call: forward (inference) or forward + backward from fresh gradients."""
    if training:
        module.zero_grad(set_to_none=True)
        x.grad = None
    out = module(x, causal=causal).output if side == "ours" else direct_forward(module, x, causal)
    if training:
        out.sum().backward()


def module_bench(args: argparse.Namespace, bar: tqdm) -> list[dict[str, Any]]:
    torch.manual_seed(0)
    module = ATTENTION.build("multi_head", d_model=args.d_model, n_heads=args.n_heads,
                             kernel="sdpa")
    records = []
    modes = ("forward",) if args.skip_train else ("forward", "train")
    for mode in modes:
        training = mode == "train"
        module.train(training)
        for T in args.module_lengths:
            x = torch.randn(args.batch, T, args.d_model, requires_grad=training)  # (B, T, D)
            for causal in (False, True):
                sides = {side: functools.partial(module_step, side, module, x, causal, training)
                         for side in ("ours", "direct")}
                with torch.enable_grad() if training else torch.inference_mode():
                    samples, _, cpu_share = time_round_robin(
                        sides, args.module_repeats, args.module_budget, args.min_repeats)
                ours, direct = (statistics.median(samples[s]) for s in ("ours", "direct"))
                paired = statistics.median(
                    a / b for a, b in zip(samples["ours"], samples["direct"], strict=True))
                record = {"bench": "module_overhead", "mode": mode, "T": T, "causal": causal,
                          "B": args.batch, "d_model": args.d_model, "n_heads": args.n_heads,
                          "ours_ms": round(ours, 4), "direct_ms": round(direct, 4),
                          "ratio": round(ours / direct, 3), "paired_ratio": round(paired, 3),
                          "repeats": len(samples["ours"]), "cpu_share": round(cpu_share, 3),
                          "target": OVERHEAD_TARGET,
                          "within_target": ours / direct <= OVERHEAD_TARGET}
                records.append(record)
                print(json.dumps(record), flush=True)
                bar.update(1)
    return records


# ----------------------------------------------------------------------------- output
def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


def plot(records: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from attnlab.viz.figures import save_png

    kernels = [r for r in records if r["bench"] == "kernel"]
    colors = dict(zip(IMPLS, ("C0", "C1", "C2", "C3"), strict=True))
    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    panels = ((axes[0, 0], False), (axes[0, 1], True))
    for ax, causal in panels:
        for impl in IMPLS:
            pts = sorted((r["T"], r["ms"]) for r in kernels
                         if r["impl"] == impl and r["causal"] == causal and "ms" in r)
            if pts:
                ax.plot(*zip(*pts, strict=True), "o-", color=colors[impl], label=impl)
        ax.set(xscale="log", yscale="log", xlabel="sequence length T", ylabel="forward ms (median)",
               title=f"{'causal' if causal else 'full (not causal)'} attention")
    ax = axes[1, 0]
    for impl in IMPLS:
        for causal, style in ((False, "o-"), (True, "s--")):
            pts = sorted((r["T"], r["peak_mib"]) for r in kernels if r["impl"] == impl
                         and r["causal"] == causal and r.get("peak_mib"))
            if pts:
                ax.plot(*zip(*pts, strict=True), style, color=colors[impl],
                        label=f"{impl}{' causal' if causal else ''}")
    ax.set(xscale="log", yscale="log", xlabel="sequence length T", ylabel="extra peak MiB",
           title="peak memory of one call (solid: full, dashed: causal)")
    ax = axes[1, 1]
    overhead = [r for r in records if r["bench"] == "module_overhead"]
    for (mode, causal), style in zip(
        [(m, c) for m in ("forward", "train") for c in (False, True)], ("o-", "s--", "^-", "v--"),
        strict=True,
    ):
        pts = sorted((r["T"], r["ratio"]) for r in overhead
                     if r["mode"] == mode and r["causal"] == causal)
        if pts:
            ax.plot(*zip(*pts, strict=True), style, label=f"{mode}{' causal' if causal else ''}")
    ax.axhline(OVERHEAD_TARGET, color="red", lw=1, ls=":", label=f"target {OVERHEAD_TARGET}")
    ax.axhline(1.0, color="gray", lw=1)
    ax.set(xscale="log", xlabel="sequence length T", ylabel="time ours / direct",
           title="multi_head module vs hand-written SDPA")
    for ax in axes.flat:
        data = [line for line in ax.get_lines() if line.get_marker() not in ("None", "", None)]
        ticks = sorted({int(x) for line in data for x in line.get_xdata()})  # not the axhlines
        if ticks:
            ax.set_xscale("log", base=2)
            ax.set_xticks(ticks, [str(t) for t in ticks])
            ax.minorticks_off()
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    skipped = [f"{r['impl']} {'causal' if r['causal'] else 'full'} T={r['T']}"
               for r in kernels if "skipped" in r]
    if skipped:
        fig.text(0.01, 0.005, "skipped (over --max-gib): " + ", ".join(skipped), fontsize=8)
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    save_png(fig, path, dpi=100, tight=False)


def summary(records: list[dict[str, Any]]) -> str:
    lines = []
    for r in records:
        if r["bench"] == "kernel" and "ms" in r:
            mem = f"{r['peak_mib']:9.1f} MiB" if r.get("peak_mib") is not None else " " * 13
            lines.append(f"kernel {r['impl']:9} T={r['T']:5} causal={r['causal']!s:5} "
                         f"{r['ms']:10.2f} ms  x{r['ratio_vs_torch_sdpa']:<6} {mem}")
        elif r["bench"] == "module_overhead":
            lines.append(f"module {r['mode']:9} T={r['T']:5} causal={r['causal']!s:5} "
                         f"ours/direct = {r['ratio']:.3f} (paired {r['paired_ratio']:.3f})")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lengths", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096, 8192],
                   help="kernel sequence lengths T (default: %(default)s)")
    p.add_argument("--batch-kernel", type=int, default=1, help="kernel batch B (default: 1)")
    p.add_argument("--heads", type=int, default=8, help="kernel heads H (default: 8)")
    p.add_argument("--head-dim", type=int, default=64, help="kernel head dim Dh (default: 64)")
    p.add_argument("--max-gib", type=float, default=6.0,
                   help="skip kernel points whose analytic peak exceeds this (default: 6)")
    p.add_argument("--repeats", type=int, default=25, help="most timed rounds per kernel point")
    p.add_argument("--min-repeats", type=int, default=5, help="fewest timed rounds per point")
    p.add_argument("--budget", type=float, default=15.0,
                   help="seconds of timed rounds per kernel point, within the repeat bounds")
    p.add_argument("--module-lengths", type=int, nargs="+", default=[128, 512, 1024, 2048],
                   help="module-overhead sequence lengths (default: %(default)s)")
    p.add_argument("--d-model", type=int, default=512, help="module width (default: 512)")
    p.add_argument("--n-heads", type=int, default=8, help="module heads (default: 8)")
    p.add_argument("--batch", type=int, default=4, help="module batch B (default: 4)")
    p.add_argument("--module-repeats", type=int, default=41,
                   help="most AB pairs per module point (default: 41)")
    p.add_argument("--module-budget", type=float, default=10.0,
                   help="seconds of timed pairs per module point, within the repeat bounds")
    p.add_argument("--skip-memory", action="store_true", help="no peak-memory child process")
    p.add_argument("--skip-train", action="store_true", help="module overhead: forward only")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--quick", action="store_true",
                   help="T <= 1024 (module T <= 512), fewer repeats and budgets: < 60 s")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help="directory for attention_kernels.json/.png (default: benchmarks/results)")
    p.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.lengths = [t for t in args.lengths if t <= 1024]
        args.module_lengths = [t for t in args.module_lengths if t <= 512]
        args.repeats, args.min_repeats = min(args.repeats, 3), min(args.min_repeats, 2)
        args.module_repeats = min(args.module_repeats, 11)
        args.budget, args.module_budget = min(args.budget, 1.0), min(args.module_budget, 1.5)
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.memory_child is not None:
        memory_child(json.loads(args.memory_child), torch.get_num_threads())
        return {}
    command = shlex.join(sys.orig_argv if argv is None else
                         ["python", "benchmarks/attention_kernels.py", *argv])
    started = time.perf_counter()
    info = machine_info()
    n_kernel = len(args.lengths) * 2 * len(IMPLS)
    n_module = len(args.module_lengths) * 2 * (1 if args.skip_train else 2)
    with tqdm(total=n_kernel * (1 if args.skip_memory else 2) + n_module, file=sys.stderr,
              desc="attention benchmark", unit="pt") as bar:
        records = kernel_bench(args, bar) + module_bench(args, bar)
    result = {
        "command": command,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": info,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                     if k != "memory_child"},
        "memory_method": memory_method(args.skip_memory),
        "time_method": "median ms of one forward call (module 'train': forward + backward), "
                       "after one warm-up round, implementations interleaved round-robin with the "
                       "order reversed every other round",
        "wall_s": round(time.perf_counter() - started, 1),
        "loadavg_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "records": records,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "attention_kernels.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(records, args.out / "attention_kernels.png")
    print(summary(records), file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
