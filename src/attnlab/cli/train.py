"""Train a model. `attnlab train translate`: the encoder-decoder Transformer on the built-in
corpus (default) or on your own parallel corpus (`--data DIR --src-lang xx --tgt-lang yy`,
files {train,valid,test}.{xx,yy}; or `--tsv` with {train,valid,test}.tsv).
`attnlab train lm --text FILE [--tokenizer chars]`: a GPT-2 / LLaMA style language model;
`mlm --text FILE`: BERT pre-training; `classify --data DIR [--init BERT_DIR]`: a classifier
(from scratch, or fine-tuning a pre-trained BERT). See `attnlab train TASK --help`.

Ctrl-C saves a resumable checkpoint and stops; `--resume` continues the same run exactly.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from attnlab.models import list_models
from attnlab.tasks.translation import (
    TranslationSettings,
    load_recipe,
    load_settings,
    recipe_names,
    settings_from_dict,
    train_translation,
)


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    tasks = parser.add_subparsers(dest="task", metavar="TASK", required=True)
    t = tasks.add_parser("translate", help="encoder-decoder translation (Vaswani et al. 2017)",
                         description=__doc__, epilog=EPILOG,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    d = TranslationSettings()

    def option(flag: str, help: str, **kwargs) -> None:
        # Defaults live in TranslationSettings; a flag overrides --config only when given.
        field_name = flag[2:].replace("-", "_")
        default = getattr(d, field_name, None)
        shown = "" if kwargs.get("action") == "store_true" else f" (default: {default})"
        t.add_argument(flag, dest=field_name, default=argparse.SUPPRESS, help=help + shown,
                       **kwargs)

    t.add_argument("--config", default=None, metavar="RECIPE|FILE",
                   help="start from a recipe (" + ", ".join(recipe_names()) + ") or a JSON file "
                        "of these settings; flags given on the command line override it")
    option("--preset", "model size", choices=list_models("transformer"))
    option("--out", "output folder (model, checkpoints, metrics)")
    option("--data", "corpus folder (default: the built-in corpus)")
    option("--src-lang", "source file suffix, e.g. en")
    option("--tgt-lang", "target file suffix, e.g. de")
    option("--tsv", "read {split}.tsv (source TAB target)", action="store_true")
    option("--vocab-size", "joint BPE vocabulary size", type=positive_int)
    option("--max-len", "skip training pairs longer than this many subwords", type=positive_int)
    option("--max-tokens", "padded tokens per micro-batch and side", type=positive_int)
    option("--grad-accum", "micro-batches per optimizer step", type=positive_int)
    option("--max-steps", "optimizer steps", type=positive_int)
    option("--time-budget", "stop training after this many seconds", type=positive_float)
    option("--warmup-steps", "linear warmup steps of the inverse-sqrt schedule",
           type=positive_int)
    option("--lr-scale", "multiplier on the paper's d^-0.5 * min(step^-0.5, step*warmup^-1.5)",
           type=positive_float)
    option("--label-smoothing", "label smoothing epsilon", type=float)
    option("--eval-every", "validate every N steps (0: only at the end)", type=int)
    option("--save-every", "checkpoint every N steps (0: only at the end)", type=int)
    option("--keep-last", "checkpoints kept (for averaging)", type=positive_int)
    option("--average-last", "test the mean of the last N checkpoints (0: the final weights)",
           type=int)
    option("--seed", "random seed (data order, initialisation, dropout)", type=int)
    option("--precision", "bf16 autocasts matmuls (fp32 weights); auto = bf16 where the CPU/GPU "
           "computes it natively (AMX, AVX512-BF16, Ampere+)", choices=["auto", "fp32", "bf16"])
    option("--device", "cpu, cuda, cuda:N; auto = cuda when available")
    option("--beam-size", "beam size for the test set", type=positive_int)
    option("--length-penalty", "GNMT length penalty alpha", type=float)
    option("--builtin-train-size", "training pairs generated for the built-in corpus",
           type=positive_int)
    t.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                   help="model config override, e.g. --set norm_first=true --set dropout=0.2")
    t.add_argument("--resume", action="store_true", help="continue the run in --out")
    from attnlab.cli.train_family import add_family_tasks

    add_family_tasks(tasks)


EPILOG = """examples:
  attnlab train translate --time-budget 600                  # built-in corpus, CPU minutes
  attnlab train translate --config wmt14-en-de-base --data wmt14 --src-lang en --tgt-lang de
  attnlab train translate --out runs/translate --resume      # continue after Ctrl-C
"""


def parse_overrides(items: list[str]) -> dict:
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects FIELD=VALUE, got {item!r}")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value  # a bare string such as norm=rms
    return overrides


def settings_from_args(args: argparse.Namespace) -> TranslationSettings:
    """Defaults, then the --config recipe, then the flags given on the command line."""
    values = asdict(TranslationSettings())
    if args.config:
        values.update(load_recipe(args.config))
    given = {name: value for name, value in vars(args).items() if name in values}
    values.update(given)
    overrides = parse_overrides(args.set)
    if overrides:
        values["model_overrides"] = {**values["model_overrides"], **overrides}
    return settings_from_dict(values, "command line")


def run(args: argparse.Namespace) -> int:
    if args.task in ("lm", "mlm", "classify"):
        from attnlab.cli.train_family import run_family

        return run_family(args)
    settings = settings_from_args(args)
    if args.resume:
        # The run continues with the settings it started with; only the budget may change.
        saved = load_settings(settings.out)
        saved.max_steps, saved.time_budget = settings.max_steps, settings.time_budget
        settings = saved
    metrics = train_translation(settings, resume=args.resume)
    if metrics.get("stopped_by") == "interrupt":
        print(f"interrupted at step {metrics['step']}: resume with "
              f"`attnlab train translate --out {settings.out} --resume`", file=sys.stderr)
        return 130
    print(f"test BLEU {metrics['bleu']:.2f}  chrF {metrics['chrf']:.2f}  "
          f"({metrics['bleu_signature']})")
    print(f"{metrics['steps']} steps in {metrics['train_seconds']:.0f}s, "
          f"{metrics['train_tokens_per_second']:,} target tokens/s; model in {settings.out}")
    return 0
