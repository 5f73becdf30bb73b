"""Attention kernels side by side: time and peak memory vs sequence length, and the cost of our
multi-head module over calling torch SDPA directly on the same projections.

    python benchmarks/attention_kernels.py            # T = 256 ... 8192 (a few minutes on 2 cores)
    python benchmarks/attention_kernels.py --quick    # T = 256 ... 1024, under a minute

Implementations (all fp32, B=1, H=8, Dh=64 by default):
  naive      the textbook softmax(q k^T / sqrt(d) + -inf mask) v, written here
  reference  attnlab.nn.functional.scaled_dot_product_attention (the paper's four steps)
  sdpa       attnlab's "sdpa" kernel (torch fused SDPA behind our mask convention)
  torch      torch.nn.functional.scaled_dot_product_attention called directly

Time: median forward time under torch.inference_mode after a warm-up, the implementations
interleaved round-robin so machine noise hits all of them alike. Peak memory: each point runs
again in a fresh subprocess and reports the growth of the process's resident-set high-water mark
(ru_maxrss) over its resident size just before the call, i.e. the extra memory the call needed
(inputs excluded). Every figure is one JSON line on stdout; all of them, with the command and
the machine, go to benchmarks/results/attention_kernels.json, and a plot beside it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from attnlab.nn.attention import ATTENTION, KERNELS

IMPLS = ("naive", "reference", "sdpa", "torch")


def naive_attention(q, k, v, causal):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (B, H, T, S)
    if causal:
        T = q.size(-2)
        future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
        scores = scores.masked_fill(future, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def call(impl: str, q, k, v, causal: bool):
    if impl == "naive":
        return naive_attention(q, k, v, causal)
    if impl == "torch":
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    return KERNELS.get(impl)(q, k, v, causal=causal)[0]


def inputs(T: int, heads: int, head_dim: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(1, heads, T, head_dim, generator=g) for _ in range(3))


def materialized_gib(T: int, heads: int) -> float:
    """Size of one (B, H, T, T) fp32 score matrix, which naive/reference build several times."""
    return heads * T * T * 4 / 2**30


def time_round_robin(fns: dict, repeats: int) -> dict[str, float]:
    """Median milliseconds per function, calling them in turn so drift is shared."""
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()  # warm-up
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(values) for name, values in samples.items()}


def peak_memory_child(impl: str, T: int, heads: int, head_dim: int, causal: bool) -> None:
    """Run in a subprocess: print the extra resident memory (MiB) one call needed."""
    q, k, v = inputs(T, heads, head_dim)
    with torch.inference_mode():
        call(impl, q[..., :8, :], k[..., :8, :], v[..., :8, :], causal)  # load kernels
        with open("/proc/self/statm") as f:
            rss_before = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        call(impl, q, k, v, causal)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    print(max(peak - rss_before, 0) / 2**20)


def peak_memory(impl: str, T: int, heads: int, head_dim: int, causal: bool) -> float | None:
    command = [sys.executable, __file__, "--child", impl, str(T), str(heads), str(head_dim),
               str(int(causal))]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return None
    return float(result.stdout.strip().splitlines()[-1])


def kernel_records(lengths, heads, head_dim, repeats, max_gib, measure_memory, bar):
    records = []
    for causal in (False, True):
        for T in lengths:
            q, k, v = inputs(T, heads, head_dim)
            skipped = {}
            impls = []
            for impl in IMPLS:
                # naive and reference hold ~4 score-sized tensors at once
                need = 4 * materialized_gib(T, heads) if impl in ("naive", "reference") else 0
                if need > max_gib:
                    skipped[impl] = f"needs ~{need:.1f} GiB > --max-gib {max_gib}"
                else:
                    impls.append(impl)
            n = repeats if T <= 2048 else max(2, repeats // 3)
            with torch.inference_mode():
                ms = time_round_robin(
                    {impl: functools.partial(call, impl, q, k, v, causal) for impl in impls}, n
                )
            for impl in IMPLS:
                record = {"bench": "kernel", "impl": impl, "T": T, "causal": causal,
                          "heads": heads, "head_dim": head_dim}
                if impl in skipped:
                    record["skipped"] = skipped[impl]
                else:
                    record["ms"] = round(ms[impl], 3)
                    record["ratio_vs_torch_sdpa"] = round(ms[impl] / ms["torch"], 3)
                    if measure_memory:
                        mib = peak_memory(impl, T, heads, head_dim, causal)
                        record["peak_mib"] = None if mib is None else round(mib, 1)
                records.append(record)
                print(json.dumps(record), flush=True)
                bar.update(1)
    return records


def direct_forward(module, x, causal):
    """What a user would write by hand with the same projection weights."""
    B, T, D = x.shape
    H, Dh = module.n_heads, module.head_dim
    q = module.q_proj(x).view(B, T, H, Dh).transpose(1, 2)  # (B, H, T, Dh)
    k = module.k_proj(x).view(B, T, H, Dh).transpose(1, 2)
    v = module.v_proj(x).view(B, T, H, Dh).transpose(1, 2)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)  # (B, H, T, Dh)
    return module.out_proj(out.transpose(1, 2).reshape(B, T, D))


def ours_forward(module, x, causal):
    return module(x, causal=causal).output


def run_module(forward, module, x, causal, backward):
    out = forward(module, x, causal)
    if backward:
        out.sum().backward()


def overhead_records(lengths, repeats, bar):
    torch.manual_seed(0)
    module = ATTENTION.build("multi_head", d_model=512, n_heads=8, kernel="sdpa").eval()
    records = []
    for mode in ("forward", "forward+backward"):
        for causal in (False, True):
            for T in lengths:
                x = torch.randn(4, T, 512, requires_grad=mode != "forward")
                backward = mode != "forward"
                ours = functools.partial(run_module, ours_forward, module, x, causal, backward)
                direct = functools.partial(run_module, direct_forward, module, x, causal, backward)
                context = torch.enable_grad() if backward else torch.inference_mode()
                with context:
                    ms = time_round_robin({"ours": ours, "direct": direct}, repeats)
                record = {"bench": "module_overhead", "mode": mode, "T": T, "causal": causal,
                          "d_model": 512, "n_heads": 8, "batch": 4, "ours_ms": round(ms["ours"], 3),
                          "direct_ms": round(ms["direct"], 3),
                          "ratio": round(ms["ours"] / ms["direct"], 3)}
                records.append(record)
                print(json.dumps(record), flush=True)
                bar.update(1)
    return records


def machine() -> dict[str, object]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version()}


def plot(records, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, causal in zip(axes[:2], (False, True), strict=True):
        for impl in IMPLS:
            points = [(r["T"], r["ms"]) for r in records if r["bench"] == "kernel"
                      and r["impl"] == impl and r["causal"] == causal and "ms" in r]
            if points:
                ax.loglog(*zip(*points, strict=True), "o-", label=impl, base=2)
        ax.set_title(f"forward time ({'causal' if causal else 'full'})")
        ax.set_xlabel("sequence length T")
        ax.set_ylabel("ms (median)")
        ax.legend()
        ax.grid(True, which="both", alpha=0.3)
    for impl in IMPLS:
        points = [(r["T"], r["peak_mib"]) for r in records if r["bench"] == "kernel"
                  and r["impl"] == impl and not r["causal"] and r.get("peak_mib")]
        if points:
            axes[2].loglog(*zip(*points, strict=True), "o-", label=impl, base=2)
    axes[2].set_title("extra peak memory (full attention)")
    axes[2].set_xlabel("sequence length T")
    axes[2].set_ylabel("MiB")
    axes[2].legend()
    axes[2].grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+",
                        default=[256, 512, 1024, 2048, 4096, 8192])
    parser.add_argument("--module-lengths", type=int, nargs="+", default=[128, 512, 1024, 2048])
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--max-gib", type=float, default=12.0,
                        help="skip naive/reference points whose score tensors exceed this")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument("--quick", action="store_true", help="T up to 1024, fewer repeats")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    if args.quick:
        args.lengths = [t for t in args.lengths if t <= 1024]
        args.module_lengths = [t for t in args.module_lengths if t <= 512]
        args.repeats = min(args.repeats, 3)
    total = len(args.lengths) * 2 * len(IMPLS) + len(args.module_lengths) * 4
    bar = tqdm(total=total, desc="benchmark", file=sys.stderr)
    records = kernel_records(args.lengths, args.heads, args.head_dim, args.repeats, args.max_gib,
                             not args.no_memory, bar)
    records += overhead_records(args.module_lengths, args.repeats, bar)
    bar.close()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {
        "command": " ".join(["python", "benchmarks/attention_kernels.py",
                             *(argv if argv is not None else sys.argv[1:])]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "memory_method": "extra resident-set high-water mark of one call in a fresh subprocess "
                         "(ru_maxrss minus RSS before the call), MiB",
        "records": records,
    }
    (out / "attention_kernels.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(records, out / "attention_kernels.png")
    return records


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        impl, T, heads, head_dim, causal = sys.argv[2:7]
        peak_memory_child(impl, int(T), int(heads), int(head_dim), bool(int(causal)))
    else:
        main()
