"""Decoding with vs without the KV cache, greedy and beam search, measured side by side.

Without the cache every step re-runs the decoder over the whole prefix (quadratic in the output
length); with it each step feeds one token, the self-attention keys/values grow by one position
and the cross-attention keys/values are projected once. Both sides run in one process on the
same random-weight model, interleaved, and every output has exactly --new-tokens tokens: the
benchmark wraps the model's lm_head so EOS is never predicted (the decoders are unchanged).
Each time is the best of --repeats runs per side; the ratio of medians is recorded as well.

    python benchmarks/decoding_cache.py            # d_model 512, 6+6 layers, vocab 8000
    python benchmarks/decoding_cache.py --quick    # a smaller model, well under 30 s

Prints one JSON line per figure and writes benchmarks/results/decoding_cache.json.
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
from torch import Tensor, nn

from attnlab.evaluation.machine import machine_info
from attnlab.generation import beam_search, greedy_decode
from attnlab.models import build_model
from attnlab.serialization import atomic_write

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "decoding_cache.json"
QUICK = dict(d_model=256, n_heads=4, n_layers=3, d_ff=1024, vocab_size=4000, repeats=2)


class NoEOSHead(nn.Module):
    """The model's lm_head with the EOS logit set to -inf, so decoding runs to the length limit."""

    def __init__(self, head: nn.Module, eos_token_id: int) -> None:
        super().__init__()
        self.head, self.eos_token_id = head, eos_token_id

    def forward(self, x: Tensor) -> Tensor:
        logits = self.head(x)  # (..., V)
        logits[..., self.eos_token_id] = float("-inf")
        return logits


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller model, 2 repeats (< 30 s)")
    p.add_argument("--d-model", type=int, default=512)
    p.add_argument("--n-heads", type=int, default=8)
    p.add_argument("--n-layers", type=int, default=6, help="encoder and decoder layers each")
    p.add_argument("--d-ff", type=int, default=2048)
    p.add_argument("--vocab-size", type=int, default=8000)
    p.add_argument("--source-len", type=int, default=30)
    p.add_argument("--new-tokens", type=int, default=60)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    p.add_argument("--beam-size", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5, help="timed runs per side (best kept)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    if args.quick:  # quick values replace the defaults, explicit flags still win
        for key, value in QUICK.items():
            if getattr(args, key) == p.get_default(key):
                setattr(args, key, value)
    return args


def decode(method: str, model: nn.Module, ids: Tensor, args: argparse.Namespace, cache: bool):
    if method == "greedy":
        return greedy_decode(model, ids, max_new_tokens=args.new_tokens, use_cache=cache)
    out = beam_search(model, ids, beam_size=args.beam_size, max_new_tokens=args.new_tokens,
                      use_cache=cache)
    return out.sequences


def timed(fn) -> tuple[float, Tensor]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def measure(method: str, model: nn.Module, ids: Tensor, args: argparse.Namespace) -> dict:
    """Warm up both sides, then alternate cached / uncached runs (order flipped every repeat)."""
    short = argparse.Namespace(**{**vars(args), "new_tokens": min(8, args.new_tokens)})
    for cache in (True, False):
        decode(method, model, ids, short, cache)
    runs: dict[bool, list[float]] = {True: [], False: []}
    outputs: dict[bool, Tensor] = {}
    for r in range(args.repeats):
        for cache in ((True, False) if r % 2 == 0 else (False, True)):
            seconds, outputs[cache] = timed(lambda c=cache: decode(method, model, ids, args, c))
            runs[cache].append(seconds)
    # Best of N (as timeit does): other processes on a shared machine only ever add time.
    cached, uncached = min(runs[True]), min(runs[False])
    generated = outputs[True].size(1)
    return {
        "method": method,
        "beam_size": args.beam_size if method == "beam" else 1,
        "batch_size": ids.size(0),
        "source_len": ids.size(1),
        "new_tokens": generated,
        "cached_s": round(cached, 4),
        "uncached_s": round(uncached, 4),
        "cached_ms_per_token": round(1000 * cached / generated, 3),
        "uncached_ms_per_token": round(1000 * uncached / generated, 3),
        "speedup": round(uncached / cached, 2),
        "speedup_median": round(statistics.median(runs[False]) / statistics.median(runs[True]), 2),
        "same_tokens": bool(torch.equal(outputs[True], outputs[False])),
        "cached_runs_s": [round(s, 4) for s in runs[True]],
        "uncached_runs_s": [round(s, 4) for s in runs[False]],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = build_model(
        "transformer-base", vocab_size=args.vocab_size, d_model=args.d_model,
        n_heads=args.n_heads, n_layers=args.n_layers, d_ff=args.d_ff, dropout=0.0,
        max_seq_len=max(args.source_len, args.new_tokens + 1),
    ).eval()
    model.lm_head = NoEOSHead(model.lm_head, model.config.eos_token_id)
    records = []
    for batch_size in args.batch_sizes:
        ids = torch.randint(3, args.vocab_size, (batch_size, args.source_len))  # (B, S)
        for method in ("greedy", "beam"):
            record = measure(method, model, ids, args)
            records.append(record)
            print(json.dumps({"benchmark": "decoding_cache", **record}), flush=True)
    result = {
        "benchmark": "decoding_cache",
        "command": shlex.join(["python", "benchmarks/decoding_cache.py", *(argv or [])]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "model": {"parameters": sum(p.numel() for p in model.parameters()),
                  "config": {k: v for k, v in vars(model.config).items()
                             if isinstance(v, int | float | str | bool)}},
        "records": records,
    }
    text = json.dumps(result, indent=2) + "\n"
    atomic_write(args.out, lambda tmp: Path(tmp).write_text(text))  # never half-written
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
