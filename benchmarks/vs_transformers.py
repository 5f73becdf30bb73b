"""attnlab vs Hugging Face `transformers`, same config, same weights, same inputs, one process,
on the CPU: training-step throughput (forward + backward, tokens/s; 4 x 128 and 4 x 256 tokens,
fp32 and, where the CPU computes bfloat16 natively, bf16 autocast on both sides) and fp32
greedy generation throughput (new tokens/s, KV cache on both sides) at batch 1 and 8, for a
GPT-2 and a small LLaMA. Runs alternate between the two sides; each figure is the median of
--repeats runs. Targets (issue 19): training >= 1.15x, generation >= 1.5x of transformers.

Beside every figure, its fraction of this machine's roofline, measured at the start of the same
run (attnlab.evaluation.roofline; issue 19): training tokens/s over the matmul peak of its
precision / (6 N +
12 L T d) FLOPs per token; generation tokens/s over read bandwidth / bytes read per decoding
step x batch, summed over the steps at their context (prompt + tokens so far).

    python benchmarks/vs_transformers.py            # gpt2 (124M) and a 6-layer LLaMA
    python benchmarks/vs_transformers.py --quick    # tiny models, seconds

Writes benchmarks/results/vs_transformers.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

from attnlab.evaluation.machine import machine_info, write_record
from attnlab.evaluation.roofline import (
    cpu_flags,
    generation_bytes_per_token,
    has_fast_bf16,
    matmul_peak,
    read_bandwidth,
    training_roofline,
)
from attnlab.interop import gpt2, llama

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "vs_transformers.json"

MODELS = {
    "gpt2": ("gpt2", dict(n_embd=768, n_head=12, n_layer=12, vocab_size=50257,
                          n_positions=1024)),
    "llama-small": ("llama", dict(hidden_size=512, intermediate_size=1376,
                                  num_attention_heads=8, num_key_value_heads=4,
                                  num_hidden_layers=6, vocab_size=32000,
                                  max_position_embeddings=1024)),
}
QUICK = {
    "gpt2": ("gpt2", dict(n_embd=64, n_head=4, n_layer=2, vocab_size=500, n_positions=256)),
    "llama-small": ("llama", dict(hidden_size=64, intermediate_size=172, num_attention_heads=4,
                                  num_key_value_heads=2, num_hidden_layers=2, vocab_size=500,
                                  max_position_embeddings=256)),
}


def build_pair(family: str, values: dict):
    import transformers

    torch.manual_seed(0)
    special = dict(bos_token_id=0, eos_token_id=0, pad_token_id=0)
    if family == "gpt2":
        hf_config = transformers.GPT2Config(**values, **special, resid_pdrop=0.0,
                                            embd_pdrop=0.0, attn_pdrop=0.0)
        hf = transformers.GPT2LMHeadModel(hf_config)
        module = gpt2
    else:
        hf_config = transformers.LlamaConfig(**values, **special)
        hf = transformers.LlamaForCausalLM(hf_config)
        module = llama
    config = module.config_from_hf(hf_config.to_dict())
    from attnlab.models.io import model_types

    ours = model_types()[type(config).model_type](config)
    ours.load_state_dict(module.state_dict_from_hf(hf.state_dict(), config), strict=False)
    return ours, hf


def alternate(runs: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each side's callable, the two sides alternating (order flipped every
    repeat) so drift on a shared machine hits both alike."""
    seconds: dict[str, list[float]] = {side: [] for side in runs}
    order = list(runs.items())
    for r in range(repeats):
        for side, fn in order if r % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            fn()
            seconds[side].append(time.perf_counter() - start)
    return {side: statistics.median(times) for side, times in seconds.items()}


def measure_roofline() -> dict:
    """This machine's limits, measured now: fp32 GEMM FLOP/s and read bandwidth."""
    peak, bandwidth = matmul_peak(torch.float32), read_bandwidth(repeats=10)
    print(f"roofline: fp32 matmul {peak.value / 1e9:.1f} GFLOP/s, read {bandwidth.value:.1f} "
          f"GB/s ({peak.threads} threads)", flush=True)
    limits = {"matmul_peak_fp32": peak.as_dict(), "read_bandwidth": bandwidth.as_dict()}
    if has_fast_bf16():
        limits["matmul_peak_bf16"] = matmul_peak(torch.bfloat16).as_dict()
    return limits


def generation_roofline_run(model, batch: int, prompt: int, new: int, gb_s: float) -> float:
    """Tokens/s of `new` decoding steps bound by reading memory, each step at its context."""
    seconds = sum(generation_bytes_per_token(model, batch, prompt + i) for i in range(new))
    return batch * new / (seconds / (gb_s * 1e9))


def add_fractions(record: dict, roofline_tps: float) -> dict:
    record["roofline_tokens_per_s"] = round(roofline_tps, 1)
    for side in ("attnlab", "transformers"):
        record[f"{side}_roofline_fraction"] = round(
            record[f"{side}_tokens_per_s"] / roofline_tps, 3)
    return record


def train_step(model, ids, precision: str = "fp32"):
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        loss = model(ids, labels=ids).loss
    loss.backward()


def measure(name: str, family: str, values: dict, args, roofline: dict) -> list[dict]:
    ours, hf = build_pair(family, values)
    records = []
    vocab = values["vocab_size"]
    ours.train(), hf.train()
    precisions = [p for p in args.train_precisions if f"matmul_peak_{p}" in roofline]
    for length in args.train_lens:
        ids = torch.randint(1, vocab, (args.train_batch, length))
        for precision in precisions:  # bf16: autocast on both sides, fp32 weights
            for model in (ours, hf):  # warm up
                train_step(model, ids, precision)
            median = alternate({"attnlab": lambda i=ids, p=precision: train_step(ours, i, p),
                                "transformers": lambda i=ids, p=precision: train_step(hf, i, p)},
                               args.repeats)
            tokens = ids.numel()
            ours_tps = tokens / median["attnlab"]
            hf_tps = tokens / median["transformers"]
            records.append({"model": name, "task": "train_step", "precision": precision,
                            "batch": args.train_batch, "length": length,
                            "attnlab_tokens_per_s": round(ours_tps, 1),
                            "transformers_tokens_per_s": round(hf_tps, 1),
                            "ratio": round(ours_tps / hf_tps, 3)})
            peak = roofline[f"matmul_peak_{precision}"]["value"]
            add_fractions(records[-1], training_roofline(ours, length, peak))
            print(json.dumps(records[-1]), flush=True)

    ours.eval(), hf.eval()
    new = args.new_tokens
    for batch in args.batch_sizes:
        prompt = torch.randint(1, vocab, (batch, args.prompt_len))
        run_ours = lambda p=prompt: ours.generate(p, max_new_tokens=new, eos_token_id=-1)  # noqa: E731
        run_hf = lambda p=prompt: hf.generate(  # noqa: E731
            p, attention_mask=torch.ones_like(p), max_new_tokens=new, min_new_tokens=new,
            do_sample=False, pad_token_id=0)
        with torch.no_grad():
            same = torch.equal(run_ours(), run_hf())  # also the warm-up
            median = alternate({"attnlab": run_ours, "transformers": run_hf}, args.repeats)
        ours_tps = batch * new / median["attnlab"]
        hf_tps = batch * new / median["transformers"]
        records.append({"model": name, "task": "greedy_generation", "batch": batch,
                        "prompt": args.prompt_len, "new_tokens": new,
                        "attnlab_tokens_per_s": round(ours_tps, 1),
                        "transformers_tokens_per_s": round(hf_tps, 1),
                        "ratio": round(ours_tps / hf_tps, 3), "same_tokens": same})
        add_fractions(records[-1], generation_roofline_run(
            ours, batch, args.prompt_len, new, roofline["read_bandwidth"]["value"]))
        print(json.dumps(records[-1]), flush=True)
    return records


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny models (seconds)")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--train-batch", type=int, default=4)
    p.add_argument("--train-lens", type=int, nargs="+", default=[128, 256],
                   help="tokens per training sequence; each length is measured")
    p.add_argument("--train-precisions", nargs="+", default=["fp32", "bf16"],
                   choices=["fp32", "bf16"],
                   help="bf16 (autocast) only where the CPU computes it natively")
    p.add_argument("--prompt-len", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    import transformers

    table = QUICK if args.quick else MODELS
    load_before = os.getloadavg()
    roofline = measure_roofline()
    records = []
    for name in args.models:
        family, values = table[name]
        records += measure(name, family, values, args, roofline)
    result = {
        "benchmark": "vs_transformers",
        "command": "python " + " ".join(shlex.quote(a) for a in [
            "benchmarks/vs_transformers.py", *(sys.argv[1:] if argv is None else argv)]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "cpu_flags": cpu_flags(),
        "load_average_1_5_15": {"start": [round(x, 2) for x in load_before],
                                "end": [round(x, 2) for x in os.getloadavg()]},
        "roofline": roofline,
        "transformers": transformers.__version__,
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "records": records,
    }
    write_record(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
