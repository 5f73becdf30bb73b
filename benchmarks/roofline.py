"""The limits of this machine and what they allow a model (issue 19, "Know the limits"; the
roofline model of Williams, Waterman and Patterson 2009):

- matmul peak: FLOP/s of a 2048^3 GEMM in fp32, and in bf16 where the CPU multiplies bfloat16
  natively (AVX512-BF16 or AMX-BF16 in /proc/cpuinfo); best of the repeats, warm-up excluded;
- read bandwidth: GB/s of `torch.sum` over a float32 tensor far larger than the last-level cache
  (the roofline's figure), and the same over smaller tensors, to show where caches stop helping;
- for GPT-2 124M (the `gpt2` preset) and a LLaMA with GQA (the `llama-small` shape of
  benchmarks/vs_transformers.py): the generation roofline (bandwidth / bytes read per decoding
  step x batch; every weight once + the KV cache) at batch 1 and 8, context 128 and 512, and the
  training roofline (peak / (6 N + 12 L T d) FLOPs per token, PaLM appendix B) at 4 x 128 and
  4 x 256 tokens.

    python benchmarks/roofline.py           # ~10 s
    python benchmarks/roofline.py --bandwidth-gib 4

Writes benchmarks/results/roofline.json (command, machine, CPU flags, torch, threads).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

from attnlab.evaluation.machine import record_header
from attnlab.evaluation.roofline import (
    cpu_flags,
    generation_bytes_per_token,
    generation_roofline,
    has_fast_bf16,
    matmul_peak,
    read_bandwidth,
    training_flops_per_token,
    training_roofline,
)
from attnlab.models import build_model
from attnlab.serialization import atomic_write

SCRIPT = "benchmarks/roofline.py"
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "roofline.json"
MODELS = {  # name -> (preset, overrides); llama-small is vs_transformers.py's small LLaMA
    "gpt2": ("gpt2", {}),
    "llama-small": ("llama-tiny", dict(vocab_size=32000, max_seq_len=1024, d_model=512,
                                       n_heads=8, n_kv_heads=4, n_layers=6, d_ff=1376)),
}
GENERATION = [(1, 128), (1, 512), (8, 128), (8, 512)]  # (batch, context)
TRAINING = [(4, 128), (4, 256)]  # (batch, seq_len)
SWEEP_MIB = (16, 64, 256, 1024)  # smaller tensors: where the caches stop helping


def last_level_cache() -> str | None:
    """The size of the CPU's largest cache as the kernel reports it (e.g. '491520K')."""
    caches = sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"))
    return caches[-1].read_text().strip() if caches else None


def measure_machine(args) -> dict:
    peaks = {"fp32": matmul_peak(torch.float32, n=args.n, repeats=args.repeats)}
    if has_fast_bf16():
        peaks["bf16"] = matmul_peak(torch.bfloat16, n=args.n, repeats=args.repeats)
    bandwidth = read_bandwidth(int(args.bandwidth_gib * 2**30), repeats=args.repeats)
    by_size = {f"{mib} MiB": round(read_bandwidth(mib * 2**20, args.repeats).value, 1)
               for mib in SWEEP_MIB}
    for dtype, m in peaks.items():
        print(f"matmul peak {dtype}: {m.value / 1e9:.1f} GFLOP/s ({m.op}, {m.threads} threads)")
    print(f"read bandwidth: {bandwidth.value:.1f} GB/s ({bandwidth.op}, "
          f"{bandwidth.threads} threads)")
    print("read bandwidth by tensor size (GB/s):", by_size)
    return {"matmul_peak": {k: m.as_dict() for k, m in peaks.items()},
            "read_bandwidth": bandwidth.as_dict(), "read_bandwidth_gb_s_by_size": by_size}


def model_rooflines(name: str, machine: dict) -> dict:
    preset, overrides = MODELS[name]
    with torch.device("meta"):  # shapes and dtypes only: nothing allocated
        model = build_model(preset, **overrides)
    gb_s = machine["read_bandwidth"]["value"]
    generation = []
    for dtype in (torch.float32, torch.bfloat16):
        weights = model.to(dtype)
        for batch, context in GENERATION:
            tps = generation_roofline(weights, batch, context, gb_s)
            generation.append({"weights": str(dtype).removeprefix("torch."), "batch": batch,
                               "context": context,
                               "bytes_per_step": generation_bytes_per_token(weights, batch,
                                                                            context),
                               "roofline_tokens_per_s": round(tps, 1)})
    model.to(torch.float32)
    training = []
    for batch, seq_len in TRAINING:
        row = {"batch": batch, "seq_len": seq_len,
               "flops_per_token": training_flops_per_token(model, seq_len)}
        for dtype, peak in machine["matmul_peak"].items():
            row[f"roofline_tokens_per_s_{dtype}"] = round(
                training_roofline(model, seq_len, peak["value"]), 1)
        training.append(row)
    params = sum(p.numel() for p in model.parameters())
    for row in generation:
        print(f"{name} generation ({row['weights']} weights) batch {row['batch']} context "
              f"{row['context']}: {row['bytes_per_step'] / 1e6:.1f} MB/step -> "
              f"{row['roofline_tokens_per_s']} tokens/s")
    for row in training:
        rates = ", ".join(f"{k.rsplit('_', 1)[-1]} {v} tokens/s" for k, v in row.items()
                          if k.startswith("roofline"))
        print(f"{name} training {row['batch']} x {row['seq_len']}: "
              f"{row['flops_per_token'] / 1e9:.3f} GFLOP/token -> {rates}")
    return {"preset": preset, "overrides": overrides, "parameters": params,
            "generation": generation, "training": training}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=2048, help="GEMM size (n x n @ n x n)")
    p.add_argument("--bandwidth-gib", type=float, default=2.0,
                   help="size of the tensor summed (well above the last-level cache)")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    header = record_header(SCRIPT, sys.argv[1:] if argv is None else argv)
    load = [round(x, 2) for x in os.getloadavg()]  # others' work lowers every figure
    machine = measure_machine(args)
    result = {"benchmark": "roofline", **header,
              "cpu_flags": cpu_flags(), "last_level_cache": last_level_cache(),
              "threads": torch.get_num_threads(), "load_average_1_5_15": load, **machine,
              "models": {name: model_rooflines(name, machine) for name in MODELS}}
    text = json.dumps(result, indent=2) + "\n"
    atomic_write(args.out, lambda tmp: Path(tmp).write_text(text))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
