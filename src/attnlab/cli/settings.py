"""Command-line flags generated from the settings dataclasses, so each setting is declared once.

Every field of a settings dataclass (`attnlab.training.settings.setting(default, help, ...)`)
becomes `--field-name`, typed from its annotation (int, float, str, bool, and `X | None`,
where `none` on the command line means None), with its help text, the values it accepts and
its default in `--help`. Flags default to "not given", so the precedence is: the dataclass's
defaults, then `--config FILE` (JSON of settings; translate also takes a shipped recipe's
name), then the flags on the command line; `--set FIELD=VALUE` adds model config overrides
(a dotted FIELD sets one key of a nested setting: `--set moe.experts=8` gives
{"moe": {"experts": 8}}, merged with the other keys given for `moe`).
Values are validated once, by the dataclass; the CLI shows a `SettingError` under the flag's
name (`--max-steps must be a positive integer, got 0`).

Why a small helper of ours and not jsonargparse (litgpt's choice): our settings are flat
dataclasses of scalars, so the whole mapping is ~100 lines with no new dependency; it uses
plain argparse, so every other `attnlab` command, the help layout and the one-line error policy
(`cli.main`) stay the same, where jsonargparse brings its own parser, config-file formats,
error printing and exit paths; and choices that depend on the registry (model presets) stay
checked in one place, the dataclass, with no schema to keep beside it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from attnlab.errors import ConfigError, UserError
from attnlab.training.settings import (
    RunSettings,
    SettingError,
    choices_of,
    load_config,
    load_run_settings,
    settings_from_dict,
)

S = TypeVar("S", bound=RunSettings)
NONE_WORDS = ("none", "null")


def flag_name(field_name: str) -> str:
    """The flag a settings field is set with."""
    return "--set" if field_name == "model_overrides" else "--" + field_name.replace("_", "-")


def user_message(error: UserError) -> str:
    """A UserError's message, with a settings field named as the user wrote it: its flag."""
    message = str(error.args[0]) if error.args else str(error)
    if isinstance(error, SettingError) and message.startswith(error.field):
        return flag_name(error.field) + message[len(error.field):]
    return message


def positive_int(text: str) -> int:
    """argparse type: an integer > 0 (the message names the expected and the given value)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def _converter(kind: type, optional: bool) -> Any:
    names = {int: "an integer", float: "a number", str: "a string"}

    def convert(text: str) -> Any:
        if optional and text.lower() in NONE_WORDS:
            return None
        try:
            return kind(text)
        except ValueError:
            expected = names[kind] + (" or none" if optional else "")
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None

    convert.__name__ = kind.__name__  # argparse names the type in its messages
    return convert


def _field_type(annotation: Any) -> tuple[type, bool]:
    """(int / float / str / bool, whether None is allowed) of an annotation."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        kinds = [a for a in args if a is not type(None)]
        if len(kinds) == 1:
            return kinds[0], True
    return annotation, False


def _shown(value: Any) -> str:
    if value == "":
        return "required unless --resume"
    return "default: " + ("none" if value is None else str(value))


METAVARS = {int: "N", float: "X"}


def add_settings_flags(parser: argparse.ArgumentParser, cls: type[RunSettings]) -> None:
    """One flag per field of `cls` (fields declared with flag=False are left out): the task's
    own first, then those every run has (RunSettings's) in a group of their own."""
    hints = typing.get_type_hints(cls)
    shared = {f.name for f in dataclasses.fields(RunSettings)}
    run_group = parser.add_argument_group("run options (every `attnlab train` command)")
    for f in sorted(dataclasses.fields(cls), key=lambda f: f.name in shared):
        if not f.metadata.get("flag", True):
            continue
        target = run_group if f.name in shared else parser
        kind, optional = _field_type(hints[f.name])
        if kind not in (int, float, str, bool):
            raise TypeError(f"{cls.__name__}.{f.name}: no flag for type {kind}")  # our bug
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        help_text = f.metadata.get("help", "")
        choices = choices_of(f)
        if choices:
            help_text += f"; one of: {', '.join(choices)}"
        flag = flag_name(f.name)
        if kind is bool:
            target.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS,
                                help=f"{help_text} (default: {'yes' if default else 'no'})")
            continue
        metavar = ("|".join(choices) if choices and len(choices) <= 4
                   else METAVARS.get(kind, f.name.split("_")[-1].upper()))
        target.add_argument(flag, dest=f.name, type=_converter(kind, optional),
                            default=argparse.SUPPRESS, metavar=metavar,
                            help=f"{help_text} ({_shown(default)})")


def add_folder_flags(parser: argparse.ArgumentParser, resumable: bool = True) -> None:
    """--resume and --overwrite, the two ways to train into a folder that holds a run (without
    either, that is refused with a line saying which to use)."""
    group = parser.add_mutually_exclusive_group()
    if resumable:
        group.add_argument("--resume", action="store_true",
                           help="continue the run in --out with its saved settings and data "
                                "(only --max-steps, --time-budget and --device may change; any "
                                "other change is refused, listed)")
    group.add_argument("--overwrite", action="store_true",
                       help="replace the run in --out: its files (settings, checkpoints, "
                            "model, metrics) are deleted whole once the new run's data is "
                            "read; refused if the folder holds files attnlab did not write")


def add_run_flags(parser: argparse.ArgumentParser, cls: type[RunSettings],
                  config_help: str = "a JSON file of these settings") -> None:
    """The flags every `attnlab train` command has: --config, --set, --resume, --overwrite, and
    one flag per setting (among them --out, --max-steps, --time-budget, --seed, --device,
    --precision)."""
    parser.add_argument("--config", default=None, metavar="FILE",
                        help=f"start from {config_help}; flags given on the command line "
                             "override it")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="model config override (JSON value), e.g. --set dropout=0.2 "
                             "--set norm=rms")
    add_folder_flags(parser)
    add_settings_flags(parser, cls)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`--set` items as model config overrides: FIELD=VALUE (VALUE read as JSON, else a bare
    string), and dotted FIELD.KEY=VALUE as a nested object ({"moe": {"experts": 8}})."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        path = key.split(".")
        if not sep or not all(path):
            raise ConfigError(f"--set expects FIELD=VALUE or FIELD.KEY=VALUE, got {item!r}")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value  # a bare string such as norm=rms
        for name in reversed(path[1:]):
            parsed = {name: parsed}
        overrides = merge_overrides(overrides, {path[0]: parsed}, item)
    return overrides


def merge_overrides(base: dict[str, Any], extra: dict[str, Any],
                    where: str = "--set") -> dict[str, Any]:
    """`extra` over `base`, nested objects merged key by key; a dotted key under a value that
    is not an object (`--set moe=null --set moe.top_k=1`) raises ConfigError."""
    merged = dict(base)
    for key, value in extra.items():
        old = merged.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            merged[key] = merge_overrides(old, value, where)
        elif isinstance(value, dict) and old is not None:
            raise ConfigError(f"{where}: {key} is {old!r}, not an object of settings, so "
                              f"{key}.{next(iter(value))} cannot be set")
        else:
            merged[key] = value
    return merged


def settings_from_args(cls: type[S], args: argparse.Namespace,
                       recipes: Path | None = None) -> S:
    """The dataclass's defaults, then --config, then the flags given, then --set. With
    --resume the run's saved settings take the place of the defaults."""
    names = {f.name for f in dataclasses.fields(cls)}
    given = {name: value for name, value in vars(args).items() if name in names}
    values: dict[str, Any] = {}
    if getattr(args, "resume", False):
        # The saved settings, with what the command line says on top: the run routine then
        # refuses any change a resume may not make (nothing is ignored silently).
        out = given.get("out", cls.__dataclass_fields__["out"].default)
        values = dataclasses.asdict(load_run_settings(cls, out))
    if getattr(args, "config", None):
        values.update(load_config(args.config, cls, recipes))
    values.update(given)
    overrides = parse_overrides(getattr(args, "set", []))
    if overrides:
        values["model_overrides"] = merge_overrides(values.get("model_overrides", {}),
                                                    overrides)
    return settings_from_dict(cls, values, "command line")
