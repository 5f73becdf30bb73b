"""Accuracy of every attention variant on Long-Range-Arena-style tasks (Tay et al., 2021):
ListOps, key-value retrieval at long distance, and handwritten digits as 1,024-pixel sequences.
Same classifier, optimiser, steps, batches and seeds for every variant; data generated here,
seeded (the digits ship with scikit-learn). The recurrent sequence mixers (mamba, rwkv,
retention; lstm by name) run beside them in the same classifier: they are not attention, read
left to right and pool the last real token. The full mode runs them by default; the quick mode
only when named (they would take it past 15 minutes: about 10 more, mostly Mamba's scan).

    attnlab bench lra --quick --out runs/lra-quick    # attention only: ~15 minutes, 2 CPU cores
    attnlab bench lra --out runs/lra                  # full: ~15 h on 2 CPU cores (estimate)
    attnlab bench lra --quick --tasks listops --names multi_head linformer --seeds 1
    attnlab bench lra --quick --names multi_head mamba rwkv retention --seeds 1

Writes results.json (after every run, so an interrupted study keeps what finished; --resume
continues it), results.md (mean ± std per task and variant beside the published LRA numbers,
with notes where the rankings disagree) and results.png into --out.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from attnlab.cli.settings import positive_int
from attnlab.errors import ConfigError
from attnlab.studies.lra.study import (
    MIXER_POOLINGS,
    TASKS,
    LRASettings,
    default_names,
    run_lra,
    runnable_names,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="small model, short sequences, ~100-step runs: about 15 minutes "
                             "on 2 CPU cores for 12 attention variants x 3 tasks x 3 seeds; "
                             "the mixers only when named in --names (about 10 more minutes, "
                             "estimate)")
    parser.add_argument("--out", default=None,
                        help="output folder (default runs/lra, or runs/lra-quick with --quick)")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=None,
                        help="tasks to run (default: all)")
    parser.add_argument("--names", nargs="+", default=None, metavar="NAME",
                        help="attention variants and sequence mixers (default: multi_head, "
                             "every registered mechanism except the RNN-era additive / "
                             "multiplicative, and (full mode) every registered mixer except "
                             "lstm)")
    parser.add_argument("--mixer-pooling", choices=MIXER_POOLINGS, default=None,
                        help="how a sequence mixer's classifier pools its causal outputs "
                             "(default last: the last real token)")
    parser.add_argument("--seeds", type=positive_int, default=None,
                        help="seeds per task and variant (default 3)")
    parser.add_argument("--steps", type=positive_int, default=None,
                        help="training steps of every run (default: per task, see results.md)")
    parser.add_argument("--device", default=None, help="torch device (default cpu)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the finished runs of an interrupted study in --out")


def run(args: argparse.Namespace) -> int:
    if args.names is not None:
        unknown = [n for n in args.names if n not in runnable_names()]
        if unknown:
            raise ConfigError(f"--names: unknown attention or mixer {unknown}; registered: "
                             f"{runnable_names()} (default: {default_names()})")
    overrides = {key: value for key, value in (
        ("out", args.out or ("runs/lra-quick" if args.quick else "runs/lra")),
        ("tasks", args.tasks), ("names", args.names), ("seeds", args.seeds),
        ("device", args.device), ("mixer_pooling", args.mixer_pooling),
    ) if value is not None}
    settings = LRASettings.quick(**overrides) if args.quick else LRASettings(**overrides)
    if args.steps is not None:
        settings = settings.with_steps(args.steps)
    try:
        run_lra(settings, resume=args.resume)
    except KeyboardInterrupt:
        print(f"interrupted: the finished runs are in {settings.out}/results.json and "
              "results.md; run the same command with --resume to continue", file=sys.stderr)
        return 130
    report = Path(settings.out) / "results.md"
    print(report.read_text(encoding="utf-8"))
    print(f"written: {report}, results.json and results.png beside it")
    return 0
