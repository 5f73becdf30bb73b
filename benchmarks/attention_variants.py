"""Efficient attention variants against exact attention: time, peak memory, scaling exponent,
crossover length and approximation error vs sequence length (the harness of
`attnlab bench attention`, src/attnlab/studies/attention_bench.py).

    python benchmarks/attention_variants.py            # T = 256 ... 16384: run on an idle machine
    python benchmarks/attention_variants.py --quick    # T <= 2048: a few minutes

B=1, d_model=64, n_heads=4 by default; every registered variant except the RNN-era additive
and multiplicative attentions, interleaved with multi_head on the fused sdpa kernel (the
baseline) and on the reference kernel. Every figure is one JSON line on stdout: one per
(variant, T) point, then one summary per variant (exponents, crossover, ratio, error, where it
stopped). The command, settings, machine and all records go to
OUT/attention_variants.json, the tables to .md, the log-log plots to .png (OUT defaults to
benchmarks/results). Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import torch

from attnlab.cli.bench_attention import add_arguments, settings_from_args
from attnlab.studies.attention_bench import run_attention_bench

DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser, default_out=str(DEFAULT_OUT))
    args = parser.parse_args(argv)
    try:
        settings = settings_from_args(args)
    except ValueError as error:
        parser.error(str(error))
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    command = shlex.join(["python", "benchmarks/attention_variants.py",
                          *(sys.argv[1:] if argv is None else argv)])
    return run_attention_bench(settings, command=command,
                               on_record=lambda r: print(json.dumps(r), flush=True))


if __name__ == "__main__":
    main()
