"""Average the weights of the last N checkpoints of a run (Vaswani et al. 2017 averaged the
last 5 for base models, 20 for big ones) and write them as the run's model.

    attnlab average --model runs/translate --last 5

Only checkpoints of one run are averaged: each carries its run's id (and the run folder's
run.json names it), so steps of two runs in one folder are refused, naming them. The model is
written like every model folder (weights first, config.json last, each file atomically): a
kill half-way leaves the folder's previous model loadable.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from attnlab.cli.settings import positive_int
from attnlab.errors import ConfigError
from attnlab.io import load_generation_config, load_tokenizer
from attnlab.models.auto import from_pretrained
from attnlab.training.checkpoint import average_checkpoints, list_checkpoints
from attnlab.training.run import run_model_folder
from attnlab.training.run_folder import read_record


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="a run folder with checkpoints/")
    parser.add_argument("--last", type=positive_int, default=5, help="checkpoints to average")
    parser.add_argument("--out", default=None,
                        help="write the averaged model here (default: over --model's model)")


def run(args: argparse.Namespace) -> int:
    run_folder = Path(args.model)
    checkpoints = list_checkpoints(run_folder / "checkpoints")
    if len(checkpoints) < args.last:
        raise ConfigError(
            f"--last {args.last} but {args.model}/checkpoints holds {len(checkpoints)} complete "
            "checkpoint(s); train with --save-every or lower --last"
        )
    chosen = checkpoints[-args.last:]
    record = read_record(run_folder) if run_folder.is_dir() else None
    source = run_model_folder(run_folder)  # the architecture (finished or not)
    model = average_checkpoints(chosen, from_pretrained(source),
                                run_id=record["run_id"] if record else None)
    out = Path(args.out or args.model)
    # a new --out folder gets the run's tokenizer and decoding settings too
    generation = load_generation_config(run_folder) or load_generation_config(source)
    model.save_pretrained(out, tokenizer=load_tokenizer(args.model, required=False),
                          generation=generation or None)
    print(f"averaged {', '.join(p.name for p in chosen)} -> {out / 'model.safetensors'}")
    return 0
