"""Scaling laws measured on this machine (Kaplan et al. 2020; Hoffmann et al. 2022): LLaMA-style
decoders from ~13k to ~4.7M non-embedding parameters trained on the built-in English corpus
(the World English Bible, split by book), dense and mixture-of-experts at equal active
parameters; each run's validation curve kept.

Fits L(N) = E + A / N^alpha at the largest D per size (and Kaplan's pure power law) and
L(N, D) = E + A / N^alpha + B / D^beta over every evaluation (Hoffmann et al.'s approach 3),
with 95% bootstrap intervals; holds out the largest model and compares the laws' prediction
with its measured loss; draws loss against compute (with the compute-optimal frontier), N and D.

    attnlab scaling --quick                      # ~10 minutes on 2 idle CPU cores
    attnlab scaling                              # 2 budgets per size, 4 MoE runs: ~4 hours
    attnlab scaling --quick --sizes 13k 56k 151k --moe off
    attnlab scaling --from runs/scaling-quick    # refit and redraw finished runs

Writes, under --out: runs/<run>/ (each run's folder: model, metrics.json with its evaluations),
results.json (after every run: an interrupted sweep, run again, reuses finished runs and
resumes the started one), report.json, report.md, loss_vs_compute.png, loss_vs_n.png and
loss_vs_d.png. The study's settings and caveats: docs/scaling.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from attnlab.cli.settings import positive_int
from attnlab.errors import ConfigError
from attnlab.studies.scaling.sweep import (
    SIZE_NAMES,
    ScalingSettings,
    expected_seconds,
    report_from,
    run_study,
)

DEFAULT_OUT = "runs/scaling"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="two budgets per size (250 and 500 steps of 1,024-token "
                             "batches), MoE at one size: ~10 minutes on 2 idle cores (default "
                             "out runs/scaling-quick)")
    parser.add_argument("--out", default=None,
                        help="output folder (default runs/scaling; --quick: "
                             "runs/scaling-quick)")
    parser.add_argument("--from", dest="from_dir", default=None, metavar="DIR",
                        help="refit and redraw the finished runs of a sweep in DIR, training "
                             "nothing")
    parser.add_argument("--text", default=None,
                        help="training text: builtin:web (default) or a UTF-8 text file (its "
                             "tail held out)")
    parser.add_argument("--sizes", nargs="+", choices=SIZE_NAMES, default=None,
                        help="model sizes by non-embedding parameters (default: all)")
    parser.add_argument("--steps", nargs="+", type=positive_int, default=None,
                        help="training steps of each size's runs, one run per value (default "
                             "1000 3000; --quick 250 500)")
    parser.add_argument("--moe", choices=("on", "off"), default="on",
                        help="also train MoE models (8 experts, top-1 and top-2) at equal "
                             "active parameters (default on)")
    parser.add_argument("--moe-sizes", nargs="+", choices=SIZE_NAMES, default=None,
                        help="sizes with MoE runs (default 443k 990k; --quick 443k)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default 1)")
    parser.add_argument("--device", default=None, help="cpu, cuda or auto (default auto)")
    parser.add_argument("--bootstrap", type=positive_int, default=None,
                        help="bootstrap resamples for the confidence intervals (default 200)")


def settings_from(args: argparse.Namespace) -> ScalingSettings:
    overrides = {key: value for key, value in (
        ("out", args.out), ("text", args.text), ("sizes", args.sizes), ("steps", args.steps),
        ("moe_sizes", args.moe_sizes), ("seed", args.seed), ("device", args.device),
        ("bootstrap", args.bootstrap),
    ) if value is not None}
    overrides["moe"] = args.moe == "on"
    if args.quick:
        return ScalingSettings.quick(**overrides)
    return ScalingSettings(**{"out": DEFAULT_OUT, **overrides})


def run(args: argparse.Namespace) -> int:
    if args.from_dir is not None:
        given = [flag for flag, value in (("--quick", args.quick), ("--out", args.out),
                                          ("--text", args.text), ("--sizes", args.sizes),
                                          ("--steps", args.steps),
                                          ("--moe-sizes", args.moe_sizes)) if value]
        if given:
            raise ConfigError(f"--from DIR refits the runs in DIR as they were trained; it "
                              f"takes no {', '.join(given)}")
        report = report_from(args.from_dir, args.bootstrap)
        return summarise(Path(args.from_dir), report)
    s = settings_from(args)
    runs = s.specs()
    print(f"scaling: {len(runs)} runs ({', '.join(r.name for r in runs)}); about "
          f"{expected_seconds(s) / 60:.0f} minutes on one CPU thread; results in {s.out}",
          flush=True)
    try:
        report = run_study(s)
    except KeyboardInterrupt:
        print(f"interrupted: finished runs are kept in {s.out}; the same command goes on "
              "where it stopped", file=sys.stderr)
        raise
    return summarise(Path(s.out), report)


def summarise(out: Path, report: dict) -> int:
    for note in report["notes"]:
        print(f"- {note}")
    print(f"written: {out / 'report.md'}, report.json and loss_vs_compute.png, loss_vs_n.png, "
          f"loss_vs_d.png beside it")
    return 0
