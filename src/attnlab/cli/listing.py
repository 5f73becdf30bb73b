"""Print what is registered: attention mechanisms, kernels, positional encodings, norms,
feed-forward networks and model presets (with their parameter counts and sources)."""

from __future__ import annotations

import argparse
import inspect
import json

from attnlab.models import PRESETS, get_config, list_models
from attnlab.nn.attention import ATTENTION, KERNELS
from attnlab.nn.feedforward import FEEDFORWARD
from attnlab.nn.norm import NORM
from attnlab.nn.position import POSITION


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")


def first_line(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.splitlines()[0] if doc else ""


def collect() -> dict[str, dict[str, str]]:
    def module_line(obj: object) -> str:
        return first_line(inspect.getmodule(obj))

    return {
        "attention": {n: module_line(ATTENTION.get(n)) for n in ATTENTION.names()},
        "kernels": {n: first_line(KERNELS.get(n)) for n in KERNELS.names()},
        "position": {n: module_line(POSITION.get(n)) for n in POSITION.names()},
        "norm": {n: first_line(NORM.get(n)) for n in NORM.names()},
        "feedforward": {n: n for n in FEEDFORWARD.names()},
        "models": {
            n: f"{type(get_config(n)).model_type}: {PRESETS[n].source}" for n in list_models()
        },
    }


def run(args: argparse.Namespace) -> int:
    table = collect()
    if args.json:
        print(json.dumps(table, indent=2))
        return 0
    for section, entries in table.items():
        print(f"{section}:")
        width = max(len(name) for name in entries)
        for name, description in entries.items():
            print(f"  {name:<{width}}  {description}")
        print()
    return 0
