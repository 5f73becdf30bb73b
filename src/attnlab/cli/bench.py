"""Benchmarks of the efficient attention variants against exact attention.

    attnlab bench attention [--quick]   # time, peak memory and error vs sequence length
    attnlab bench lra [--quick]         # accuracy on Long-Range-Arena-style tasks, over seeds

Each subcommand writes JSON, a Markdown table and PNG plots into its --out folder.
"""

from __future__ import annotations

import argparse

from attnlab.cli import bench_attention, bench_lra
from attnlab.errors import ConfigError

# name -> (module with `add_arguments(parser)` and `run(args) -> int`, one-line help)
SUBCOMMANDS = {
    "attention": (bench_attention, "time / memory / error of every attention variant vs length"),
    "lra": (bench_lra, "ListOps, key-value retrieval and pixel digits: accuracy per variant"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench", metavar="BENCHMARK", required=True)
    for name, (module, help_text) in SUBCOMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=module.__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(command)
        command.set_defaults(run=module.run)


def run(args: argparse.Namespace) -> int:  # replaced by the chosen subcommand's run
    raise ConfigError("choose a benchmark: attention or lra")
