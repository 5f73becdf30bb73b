"""attnlab embed-compare: UNFINISHED placeholder, being written (issue 8)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise ValueError("attnlab embed-compare is not written yet")
