"""attnlab bench attention: UNFINISHED placeholder, being written (issue 7)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="short run")


def run(args: argparse.Namespace) -> int:
    raise ValueError("attnlab bench attention is not written yet")
