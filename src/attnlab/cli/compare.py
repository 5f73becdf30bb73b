"""Transformer vs RNN vs CNN, measured on this machine: training cost and memory against
sequence length, Table 1 (sequential operations, path length) counted on real layers, BLEU at an
equal time and parameter budget, and long-range probes (copy, reverse, key-value recall).

    attnlab compare --quick --out runs/compare          # about 10 minutes on 2 CPU cores
    attnlab compare --out runs/compare                   # 3 seeds, 150 s BLEU budgets
    attnlab compare --parts cost table1 --archs transformer rnn-bahdanau

Writes results.json (after every part, so an interrupted run keeps what finished),
results.md (tables + the usual comparison with measured numbers + notes where they disagree
with the folklore) and cost.png, table1.png, bleu.png, probes.png into --out.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from attnlab.cli.settings import positive_float, positive_int
from attnlab.studies.compare.study import ARCHITECTURES, PARTS, CompareSettings, run_compare


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/compare", help="output folder")
    parser.add_argument("--quick", action="store_true",
                        help="one seed and short budgets: about 10 minutes on 2 CPU cores")
    parser.add_argument("--archs", nargs="+", choices=list(ARCHITECTURES), default=None,
                        help="architectures to compare (default: all)")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=None,
                        help="parts to run (default: all)")
    parser.add_argument("--size", default=None, choices=("tiny", "mini", "small"),
                        help="preset size for cost and BLEU (default mini: ~1.2M params each)")
    parser.add_argument("--seeds", type=positive_int, default=None,
                        help="seeds per BLEU run and probe (default 3; --quick 1)")
    parser.add_argument("--bleu-seconds", type=positive_float, default=None,
                        help="training seconds per architecture and seed (default 150; quick 60)")
    parser.add_argument("--probe-seconds", type=positive_float, default=None,
                        help="training seconds per probe (default 30; quick 8)")
    parser.add_argument("--lengths", type=positive_int, nargs="+", default=None,
                        help="sequence lengths for the cost part (default 16 ... 512)")


def run(args: argparse.Namespace) -> int:
    overrides = {key: value for key, value in (
        ("out", args.out), ("architectures", args.archs), ("parts", args.parts),
        ("size", args.size), ("seeds", args.seeds), ("bleu_seconds", args.bleu_seconds),
        ("probe_seconds", args.probe_seconds), ("lengths", args.lengths),
    ) if value is not None}
    settings = CompareSettings.quick(**overrides) if args.quick else CompareSettings(**overrides)
    run_compare(settings)
    report = Path(settings.out) / "results.md"
    print(report.read_text(encoding="utf-8"))
    print(f"written: {report} and the PNG plots beside it")
    return 0
