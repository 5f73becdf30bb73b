"""What the scale-out options buy on this machine, each measured side by side in one run
(alternating the sides, best of the rounds) and written with the machine:

- processes: training tokens/s of `attnlab train lm` as 1 process (all cores as threads) vs
  2 processes under torchrun (DDP, then FSDP2; one thread each), with the same global batch;
- precision: a training step in fp32 vs bf16 autocast (AMX / AVX512-BF16 where the CPU has
  them) vs fp16 (GradScaler): step time, achieved TFLOP/s as a fraction of this machine's
  measured matmul peak in that dtype, and the loss after the same steps from the same start;
- activation checkpointing: peak resident memory of a training step with and without it
  (each in a fresh process: VmHWM minus the resident memory before the step);
- compile: torch.compile of every block vs eager, per training step (compile time apart).

    python benchmarks/distributed.py            # all four, ~6 minutes on 2 cores
    python benchmarks/distributed.py --only precision compile

Run it alone: two jobs on 2 cores halve each other. Writes benchmarks/results/distributed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from attnlab.data.synthetic import RandomWindows
from attnlab.evaluation.machine import record_header
from attnlab.evaluation.roofline import cpu_flags
from attnlab.models import build_model
from attnlab.training.distributed import Ranks
from attnlab.training.parallelize import parallelize
from attnlab.training.trainer import Trainer, TrainerConfig

SCRIPT = "benchmarks/distributed.py"
OUT = Path(__file__).resolve().parent / "results" / "distributed.json"
# A GPT-2-shaped model big enough for matmuls to dominate on a CPU (~13M parameters).
MODEL = dict(d_model=384, n_heads=6, n_layers=6, d_ff=1536, vocab_size=8000, max_seq_len=256,
             dropout=0.0, attention_dropout=0.0)
BATCH, BLOCK = 8, 256


def lm_loss(model, batch):
    ids = batch["input_ids"]
    return model(ids, labels=ids).loss, ids.numel() - ids.size(0)


def trainer(precision: str = "fp32", **options) -> Trainer:
    torch.manual_seed(0)
    model = build_model("gpt2-tiny", **MODEL)
    parallel = parallelize(model, Ranks(), torch.device("cpu"), precision=precision, **options)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batches = RandomWindows(MODEL["vocab_size"], BATCH, BLOCK)
    return Trainer(model, optimizer, lambda step: 1e-3, batches, lm_loss,
                   TrainerConfig(max_steps=10**6, precision=precision, progress=False),
                   parallel=parallel)


def step_flops(model: torch.nn.Module) -> float:
    """Training FLOPs of one step: 6 x parameters x tokens (matmuls, forward + backward),
    plus attention's 12 x layers x T x D per token (Kaplan et al. 2020; PaLM appendix B)."""
    params = sum(p.numel() for p in model.parameters())
    tokens = BATCH * BLOCK
    return 6 * params * tokens + 12 * MODEL["n_layers"] * BLOCK * MODEL["d_model"] * tokens


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """This machine's measured matmul FLOP/s in `dtype` (the hardware limit we compare with)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def timed_steps(t: Trainer, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        t.train_step()
    return (time.perf_counter() - start) / steps


def bench_precision(rounds: int, steps: int) -> dict:
    sides = {p: trainer(p) for p in ("fp32", "bf16", "fp16")}
    for t in sides.values():
        timed_steps(t, 2)  # warm up
    times = {p: [] for p in sides}
    for _ in range(rounds):
        for p, t in sides.items():
            times[p].append(timed_steps(t, steps))
    flops = step_flops(sides["fp32"].model)
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16),
             "fp16": matmul_peak(torch.float16)}
    # the loss after the same steps from the same start and data (each side saw 2 + rounds x
    # steps batches), on one fresh batch
    losses = {}
    for p, t in sides.items():
        t.model.eval()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=False):
            fresh = RandomWindows(MODEL["vocab_size"], BATCH, BLOCK).next()
            losses[p] = lm_loss(t.model, fresh)[0].item()
    result = {}
    for p in sides:
        best = min(times[p])
        result[p] = {"step_s": round(best, 4), "tflops": round(flops / best / 1e12, 3),
                     "matmul_peak_tflops": round(peaks[p] / 1e12, 3),
                     "fraction_of_peak": round(flops / best / peaks[p], 3),
                     "loss_after_steps": round(losses[p], 4)}
    result["bf16_speedup"] = round(min(times["fp32"]) / min(times["bf16"]), 2)
    result["fp16_speedup"] = round(min(times["fp32"]) / min(times["fp16"]), 2)
    result["steps_trained"] = 2 + rounds * steps
    return result


def bench_compile(rounds: int, steps: int) -> dict:
    eager, compiled = trainer(), trainer(compile=True)
    timed_steps(eager, 2)
    start = time.perf_counter()
    timed_steps(compiled, 2)  # the first steps compile every block
    compile_s = time.perf_counter() - start
    times = {"eager": [], "compile": []}
    for _ in range(rounds):
        times["eager"].append(timed_steps(eager, steps))
        times["compile"].append(timed_steps(compiled, steps))
    return {"eager_step_s": round(min(times["eager"]), 4),
            "compiled_step_s": round(min(times["compile"]), 4),
            "speedup": round(min(times["eager"]) / min(times["compile"]), 2),
            "first_two_steps_with_compilation_s": round(compile_s, 1)}


def peak_memory_child(checkpointing: bool) -> None:
    """In a fresh process: VmHWM growth over one training step (printed as JSON)."""
    t = trainer(activation_checkpointing=checkpointing)
    t.train_step()  # optimizer state exists from here on

    def status(key: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(key)

    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = status("VmRSS")
    t.train_step()
    print(json.dumps({"step_peak_mib": round((status("VmHWM") - before) / 2**20, 1)}))


# glibc keeps freed memory for reuse, so a process's peak RSS says more about its allocator's
# history than about the step: in the child, every allocation over 64 KiB is its own mapping,
# returned to the system when freed, and RSS follows the tensors alive.
PLAIN_MALLOC = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0",
                "MALLOC_ARENA_MAX": "1"}


def bench_memory() -> dict:
    result = {}
    for name, flag in (("no_checkpointing", "0"), ("activation_checkpointing", "1")):
        out = subprocess.run([sys.executable, __file__, "--child-memory", flag],
                             capture_output=True, text=True, check=True, env=PLAIN_MALLOC)
        result[name] = json.loads(out.stdout.strip().splitlines()[-1])["step_peak_mib"]
    result["saved"] = round(1 - result["activation_checkpointing"] / result["no_checkpointing"],
                            3)
    return result


def bench_processes(rounds: int, steps: int) -> dict:
    """`attnlab train lm` tokens/s: 1 process with grad_accum 2 vs 2 processes (torchrun)."""
    work = Path(tempfile.mkdtemp(prefix="attnlab-dist-bench-"))
    words = ("the of and to in a is that for it as was with be by on not he this are or his "
             "from at which but have an they you were her she there one all we can").split()
    text = work / "text.txt"
    text.write_text("\n".join(" ".join(words[(i * 7 + j * 13) % len(words)] for j in range(40))
                              for i in range(4000)) + "\n")
    model = [f"--set={k}={v}" for k, v in MODEL.items() if k != "vocab_size"]
    common = ["train", "lm", "--text", str(text), "--max-steps", str(steps), "--save-every",
              "0", "--batch-size", str(BATCH // 2), "--block-size", "128", "--vocab-size",
              "2000", "--overwrite", *model]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone",
              "--nproc_per_node", "2", "-m", "attnlab"]
    sides = {"1 process x 2 threads": [sys.executable, "-m", "attnlab", *common,
                                       "--grad-accum", "2"],
             "2 processes x 1 thread (ddp)": [*launch, *common, "--strategy", "ddp"],
             "2 processes x 1 thread (fsdp)": [*launch, *common, "--strategy", "fsdp"]}
    rates = {name: [] for name in sides}
    for _ in range(rounds):
        for i, (name, argv) in enumerate(sides.items()):
            out = work / f"run{i}"
            subprocess.run([*argv, "--out", str(out)], check=True, env=env,
                           capture_output=True, text=True)
            metrics = json.loads((out / "metrics.json").read_text())
            rates[name].append(metrics["train_tokens_per_second"])
    best = {name: max(v) for name, v in rates.items()}
    base = best["1 process x 2 threads"]
    return {"tokens_per_second": best,
            "ratio_to_one_process": {name: round(v / base, 2) for name, v in best.items()},
            "global_batch": f"{BATCH} sequences x 128 tokens per step", "steps": steps}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="+", default=["processes", "precision", "memory", "compile"],
                   choices=["processes", "precision", "memory", "compile"])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--child-memory", choices=["0", "1"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child_memory is not None:
        peak_memory_child(args.child_memory == "1")
        return
    record = {**record_header(SCRIPT, sys.argv[1:] if argv is None else argv),
              "cpu_flags": cpu_flags(), "torch": torch.__version__,
              "threads": torch.get_num_threads(),
              "model": {**MODEL, "batch": BATCH, "block": BLOCK, "params": sum(
                  p.numel() for p in build_model("gpt2-tiny", **MODEL).parameters())}}
    jobs = {"precision": lambda: bench_precision(args.rounds, 4),
            "compile": lambda: bench_compile(args.rounds, 4),
            "memory": bench_memory,
            "processes": lambda: bench_processes(2, 30)}
    for name in args.only:
        start = time.perf_counter()
        record[name] = jobs[name]()
        record[name]["benchmark_seconds"] = round(time.perf_counter() - start, 1)
        print(json.dumps({name: record[name]}), flush=True)
    record["gpu"] = "not measured on a GPU (no GPU was available to this benchmark)"
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
