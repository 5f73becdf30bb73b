"""Greedy decoding with a growing vs a preallocated KV cache, decoder-only, measured side by side.

The growing cache concatenates each step's keys/values onto a fresh copy of everything cached
(O(S) bytes per layer per step); the preallocated one writes them in place into a buffer sized
for prompt + new tokens and attends over a view (Hugging Face's StaticCache, gpt-fast). Both
sides run `generate_steps` in one process on the same random-weight model and prompt, alternating
(order flipped every repeat) so drift on a shared machine hits both alike; each figure is the
median of --repeats runs. Two rates: generated tokens over the whole call (prefill included,
as a user sees it) and the decoding steps alone (after the first token, which comes from the
prefill both sides share). EOS is disabled, so every run generates exactly --new-tokens.

    python benchmarks/preallocated_cache.py            # gpt2 (124M) and a 6-layer LLaMA
    python benchmarks/preallocated_cache.py --quick    # tiny models, seconds

Prints one JSON line per figure and writes benchmarks/results/preallocated_cache.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from attnlab.evaluation.machine import machine_info
from attnlab.generation import generate_steps
from attnlab.models import build_model
from attnlab.serialization import atomic_write

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "preallocated_cache.json"
MODELS = {  # name -> (preset, overrides); llama-small is vs_transformers.py's small LLaMA
    "gpt2": ("gpt2", {}),
    "llama-small": ("llama-tiny", dict(vocab_size=32000, max_seq_len=1024, d_model=512,
                                       n_heads=8, n_kv_heads=4, n_layers=6, d_ff=1376)),
}
QUICK = {
    "gpt2": ("gpt2-tiny", {}),
    "llama-small": ("llama-tiny", {}),
}
SIDES = {"growing": False, "preallocated": True}  # side -> preallocate_cache


def run(model: torch.nn.Module, prompt: torch.Tensor, new_tokens: int,
        preallocate: bool) -> tuple[float, float, torch.Tensor]:
    """One greedy generation: (seconds in all, seconds after the first token, ids (B, T + n)).
    The first token comes out of the prompt's forward (prefill), which the two caches share;
    the time after it is the one-token decoding steps alone."""
    start = time.perf_counter()
    steps = []
    for next_ids in generate_steps(model, prompt, max_new_tokens=new_tokens, eos_token_id=-1,
                                   preallocate_cache=preallocate):
        if not steps:
            first = time.perf_counter()
        steps.append(next_ids)
    end = time.perf_counter()
    return end - start, end - first, torch.cat([prompt, torch.stack(steps, dim=1)], dim=1)


def measure(name: str, model: torch.nn.Module, batch: int, prompt_len: int,
            args: argparse.Namespace) -> dict[str, Any]:
    """Warm up, then alternate the sides (order flipped every repeat) and take medians."""
    torch.manual_seed(args.seed)
    prompt = torch.randint(1, model.config.vocab_size, (batch, prompt_len))  # (B, T)
    new = args.new_tokens
    outputs = {side: run(model, prompt, new, flag)[2] for side, flag in SIDES.items()}
    total: dict[str, list[float]] = {side: [] for side in SIDES}
    decode: dict[str, list[float]] = {side: [] for side in SIDES}
    order = list(SIDES.items())
    for r in range(args.repeats):
        for side, flag in order if r % 2 == 0 else order[::-1]:
            seconds, decode_seconds, _ = run(model, prompt, new, flag)
            total[side].append(seconds)
            decode[side].append(decode_seconds)
    tps = {side: batch * new / statistics.median(s) for side, s in total.items()}
    decode_tps = {side: batch * (new - 1) / statistics.median(s) for side, s in decode.items()}
    return {
        "model": name,
        "batch": batch,
        "prompt": prompt_len,
        "new_tokens": new,
        "growing_tokens_per_s": round(tps["growing"], 2),
        "preallocated_tokens_per_s": round(tps["preallocated"], 2),
        "ratio": round(tps["preallocated"] / tps["growing"], 3),
        "growing_decode_tokens_per_s": round(decode_tps["growing"], 2),
        "preallocated_decode_tokens_per_s": round(decode_tps["preallocated"], 2),
        "decode_ratio": round(decode_tps["preallocated"] / decode_tps["growing"], 3),
        "same_tokens": bool(torch.equal(outputs["growing"], outputs["preallocated"])),
        "growing_runs_s": [round(s, 4) for s in total["growing"]],
        "preallocated_runs_s": [round(s, 4) for s in total["preallocated"]],
        "growing_decode_runs_s": [round(s, 4) for s in decode["growing"]],
        "preallocated_decode_runs_s": [round(s, 4) for s in decode["preallocated"]],
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny models (seconds)")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--prompt-lens", type=int, nargs="+", default=[16, 512])
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1])
    p.add_argument("--repeats", type=int, default=5, help="timed runs per side (median kept)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    table = QUICK if args.quick else MODELS
    records, models = [], {}
    for name in args.models:
        preset, overrides = table[name]
        torch.manual_seed(args.seed)
        model = build_model(preset, **overrides).eval()
        models[name] = {"preset": preset, "overrides": overrides,
                        "parameters": sum(p.numel() for p in model.parameters())}
        for batch in args.batch_sizes:
            for prompt_len in args.prompt_lens:
                record = measure(name, model, batch, prompt_len, args)
                records.append(record)
                print(json.dumps({"benchmark": "preallocated_cache", **record}), flush=True)
    result = {
        "benchmark": "preallocated_cache",
        "command": shlex.join(["python", "benchmarks/preallocated_cache.py",
                               *(sys.argv[1:] if argv is None else argv)]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "models": models,
        "records": records,
    }
    text = json.dumps(result, indent=2) + "\n"
    atomic_write(args.out, lambda tmp: Path(tmp).write_text(text))  # never half-written
    return result


if __name__ == "__main__":
    main()
