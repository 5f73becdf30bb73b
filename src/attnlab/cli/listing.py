"""Print what is registered: attention mechanisms, kernels, the recurrent sequence mixers that
may replace attention, positional encodings, norms, feed-forward networks and model presets
(with their parameter counts and sources)."""

from __future__ import annotations

import argparse
import inspect
import json

from attnlab.models import PRESETS, get_config, list_models
from attnlab.nn.attention import ATTENTION, KERNELS
from attnlab.nn.feedforward import FEEDFORWARD
from attnlab.nn.mixers import MIXER
from attnlab.nn.norm import NORM
from attnlab.nn.position import POSITION


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")


def first_line(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.splitlines()[0] if doc else ""


CAPABILITIES = {  # capability flag -> what `attnlab list` calls it
    "supports_causal": "causal",
    "supports_mask": "padding",
    "supports_cross": "cross",
    "supports_cache": "cache",
}


def attention_line(name: str) -> str:
    """First docstring line, what the mechanism supports and, if stated, its cost."""
    cls = ATTENTION.get(name)
    supported = [label for flag, label in CAPABILITIES.items() if getattr(cls, flag, True)]
    title = first_line(inspect.getmodule(cls)).split(" (")[0]  # the name before the citation
    line = f"{title} [{', '.join(supported) or 'no masks'}]"
    complexity = getattr(cls, "complexity", "")
    return f"{line} {complexity}" if complexity else line


def mixer_line(name: str) -> str:
    """The mixer's title (its module's first line, before the citation) and its forms."""
    cls = MIXER.get(name)
    title = first_line(inspect.getmodule(cls)).split(" (")[0]
    return f"{title} [forms: {', '.join(cls.forms)}]"


def collect() -> dict[str, dict[str, str]]:
    def module_line(obj: object) -> str:
        return first_line(inspect.getmodule(obj))

    return {
        "attention": {n: attention_line(n) for n in ATTENTION.names()},
        "kernels": {n: first_line(KERNELS.get(n)) for n in KERNELS.names()},
        "mixers": {n: mixer_line(n) for n in MIXER.names()},
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
        width = max((len(name) for name in entries), default=0)
        for name, description in entries.items():
            print(f"  {name:<{width}}  {description}")
        print()
    return 0
