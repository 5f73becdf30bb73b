"""Train a model: `attnlab train translate | lm | mlm | classify`. See `attnlab train TASK
--help`.

Every task runs on the one run routine and takes the same run flags, generated from its
settings: --config FILE, --set FIELD=VALUE, --out, --max-steps, --time-budget, --seed,
--device, --precision, --resume. Ctrl-C saves a resumable checkpoint, says how to resume and
exits with 130; `--resume` continues the same run exactly.
"""

from __future__ import annotations

import argparse
import sys
import textwrap

from attnlab.cli.settings import (  # noqa: F401  (positive_int / positive_float: aliases)
    add_run_flags,
    positive_float,
    positive_int,
)
from attnlab.cli.settings import settings_from_args as settings_of
from attnlab.cli.train_family import COMMANDS, TrainCommand
from attnlab.tasks.translation import TranslationSettings
from attnlab.training.run import run_task


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The epilog's example lines kept as written; the description is wrapped by us."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    tasks = parser.add_subparsers(dest="task", metavar="TASK", required=True)
    for name, command in COMMANDS.items():
        sub = tasks.add_parser(name, help=command.help,
                               description=textwrap.fill(command.description, 78),
                               epilog=command.epilog, formatter_class=HelpFormatter)
        config_help = "a JSON file of these settings"
        if command.recipes is not None:
            shipped = ", ".join(sorted(p.stem for p in command.recipes.glob("*.json")))
            config_help = f"a recipe ({shipped}) or {config_help}"
        add_run_flags(sub, command.settings, config_help)


def settings_from_args(args: argparse.Namespace, command: TrainCommand | None = None):
    """The task's settings from the parsed flags (translate's when no command is given)."""
    if command is None:
        command = COMMANDS["translate"]
        assert command.settings is TranslationSettings
    return settings_of(command.settings, args, command.recipes)


def run(args: argparse.Namespace) -> int:
    command = COMMANDS[args.task]
    settings = settings_from_args(args, command)
    outcome = run_task(command.task(settings), resume=args.resume)
    if outcome.interrupted:
        print(f"interrupted at step {outcome.result.step}: resume with "
              f"`attnlab train {args.task} --out {settings.out} --resume`", file=sys.stderr)
        return 130
    for line in command.summary(outcome.metrics, outcome.task.settings):
        print(line)
    return 0
