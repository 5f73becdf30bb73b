"""Every attention variant against exact attention on this machine: forward and forward +
backward time, peak memory, scaling exponent, crossover length and approximation error vs
sequence length (exact = multi_head on the fused sdpa kernel; the unfused reference kernel is
shown for context).

    attnlab bench attention --quick --out runs/bench-attention   # T <= 2048, a few minutes
    attnlab bench attention                                       # T = 256 ... 16384
    attnlab bench attention --names linformer performer --lengths 512 1024 2048

Default: every registered mechanism except the RNN-era ones (additive, multiplicative: score
networks with O(T S Da) cost), which --names can still include. A variant stops growing T once
a fwd+bwd step exceeds --time-budget or its peak memory would exceed --max-gib.
Writes attention_variants.json (after every length), .md and .png into --out.
"""

from __future__ import annotations

import argparse

import torch

from attnlab.cli.settings import positive_float, positive_int
from attnlab.studies.attention_bench import AttentionBenchSettings, run_attention_bench


def add_arguments(parser: argparse.ArgumentParser, default_out: str = "runs/bench-attention"
                  ) -> None:
    parser.add_argument("--out", default=default_out, help=f"output folder ({default_out})")
    parser.add_argument("--quick", action="store_true",
                        help="T <= 2048, 3 repeats, 5 s budget, error at T=256")
    parser.add_argument("--names", nargs="+", default=None, metavar="NAME",
                        help="registered attentions to compare with exact attention "
                             "(default: all but additive / multiplicative)")
    parser.add_argument("--lengths", type=positive_int, nargs="+", default=None,
                        help="sequence lengths T (default 256 ... 16384; quick ... 2048)")
    parser.add_argument("--repeats", type=positive_int, default=None,
                        help="timed repeats per point, median kept (default 5; quick 3)")
    parser.add_argument("--time-budget", type=positive_float, default=None,
                        help="seconds a fwd+bwd step may take before a variant stops growing T "
                             "(default 20; quick 5)")
    parser.add_argument("--max-gib", type=positive_float, default=None,
                        help="cap on a variant's extrapolated peak memory (default 6 GiB)")
    parser.add_argument("--d-model", type=positive_int, default=None, help="width (default 64)")
    parser.add_argument("--n-heads", type=positive_int, default=None, help="heads (default 4)")
    parser.add_argument("--batch", type=positive_int, default=None, help="batch (default 1)")
    parser.add_argument("--error-length", type=positive_int, default=None,
                        help="T of the approximation-error measurement (default 1024; quick 256)")
    parser.add_argument("--error-seeds", type=positive_int, default=None,
                        help="seeds averaged for the error (default 3)")
    parser.add_argument("--no-unfused", action="store_true",
                        help="leave out multi_head on the unfused reference kernel")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where to run (cuda when available)")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="torch CPU threads (default: torch's)")


def settings_from_args(args: argparse.Namespace) -> AttentionBenchSettings:
    overrides = {key: value for key, value in (
        ("out", args.out), ("names", args.names), ("lengths", args.lengths),
        ("repeats", args.repeats), ("time_budget", args.time_budget), ("max_gib", args.max_gib),
        ("d_model", args.d_model), ("n_heads", args.n_heads), ("batch", args.batch),
        ("error_length", args.error_length), ("error_seeds", args.error_seeds),
        ("device", args.device),
    ) if value is not None}
    if args.no_unfused:
        overrides["unfused"] = False
    if args.quick:
        return AttentionBenchSettings.quick(**overrides)
    return AttentionBenchSettings(**overrides)


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    from attnlab.studies.attention_bench_report import STEM, markdown

    results = run_attention_bench(settings)
    print(markdown(results))
    print(f"written: {settings.out}/{STEM}.json, .md and .png")
    return 0
