"""Train a model. `attnlab train translate`: the encoder-decoder Transformer on the built-in
corpus (default) or on your own parallel corpus (`--data DIR --src-lang xx --tgt-lang yy`,
files {train,valid,test}.{xx,yy}; or `--tsv` with {train,valid,test}.tsv).

Ctrl-C saves a resumable checkpoint and stops; `--resume` continues the same run exactly.
"""

from __future__ import annotations

import argparse
import json
import sys

from attnlab.models import list_models
from attnlab.tasks.translation import TranslationSettings, load_settings, train_translation


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
                         description=__doc__,
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = TranslationSettings()
    t.add_argument("--preset", default=d.preset, choices=list_models(), help="model size")
    t.add_argument("--out", default=d.out, help="output folder (model, checkpoints, metrics)")
    t.add_argument("--data", default=None, help="corpus folder (default: the built-in corpus)")
    t.add_argument("--src-lang", default=None, help="source file suffix, e.g. de")
    t.add_argument("--tgt-lang", default=None, help="target file suffix, e.g. en")
    t.add_argument("--tsv", action="store_true", help="read {split}.tsv (source TAB target)")
    t.add_argument("--vocab-size", type=positive_int, default=d.vocab_size,
                   help="joint BPE vocabulary size")
    t.add_argument("--max-len", type=positive_int, default=d.max_len,
                   help="skip training pairs longer than this many subwords")
    t.add_argument("--max-tokens", type=positive_int, default=d.max_tokens,
                   help="tokens per micro-batch (padding included)")
    t.add_argument("--grad-accum", type=positive_int, default=d.grad_accum,
                   help="micro-batches per optimizer step")
    t.add_argument("--max-steps", type=positive_int, default=d.max_steps)
    t.add_argument("--time-budget", type=positive_float, default=None,
                   help="stop training after this many seconds")
    t.add_argument("--warmup-steps", type=positive_int, default=d.warmup_steps)
    t.add_argument("--lr-scale", type=positive_float, default=d.lr_scale,
                   help="multiplier on the paper's d^-0.5 * min(step^-0.5, step*warmup^-1.5)")
    t.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    t.add_argument("--eval-every", type=int, default=d.eval_every,
                   help="validate every N steps (0: only at the end)")
    t.add_argument("--save-every", type=int, default=d.save_every,
                   help="checkpoint every N steps (0: only at the end)")
    t.add_argument("--keep-last", type=positive_int, default=d.keep_last,
                   help="checkpoints kept (for `attnlab average`)")
    t.add_argument("--seed", type=int, default=d.seed)
    t.add_argument("--beam-size", type=positive_int, default=d.beam_size)
    t.add_argument("--length-penalty", type=float, default=d.length_penalty)
    t.add_argument("--builtin-train-size", type=positive_int, default=d.builtin_train_size,
                   help="training pairs generated for the built-in corpus")
    t.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                   help="model config override, e.g. --set norm_first=true --set dropout=0.2")
    t.add_argument("--resume", action="store_true", help="continue the run in --out")


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


def run(args: argparse.Namespace) -> int:
    settings = TranslationSettings(
        out=args.out, preset=args.preset, data=args.data, src_lang=args.src_lang,
        tgt_lang=args.tgt_lang, tsv=args.tsv, builtin_train_size=args.builtin_train_size,
        vocab_size=args.vocab_size, max_len=args.max_len, max_tokens=args.max_tokens,
        grad_accum=args.grad_accum, max_steps=args.max_steps, time_budget=args.time_budget,
        warmup_steps=args.warmup_steps, lr_scale=args.lr_scale,
        label_smoothing=args.label_smoothing, eval_every=args.eval_every,
        save_every=args.save_every, keep_last=args.keep_last, seed=args.seed,
        beam_size=args.beam_size, length_penalty=args.length_penalty,
        model_overrides=parse_overrides(args.set),
    )
    if args.resume:
        # The run continues with the settings it started with; only the budget may change.
        saved = load_settings(args.out)
        saved.max_steps, saved.time_budget = settings.max_steps, settings.time_budget
        settings = saved
    metrics = train_translation(settings, resume=args.resume)
    if metrics.get("stopped_by") == "interrupt":
        print(f"interrupted at step {metrics['step']}: resume with "
              f"`attnlab train translate --out {args.out} --resume`", file=sys.stderr)
        return 130
    print(f"test BLEU {metrics['bleu']:.2f}  chrF {metrics['chrf']:.2f}  "
          f"({metrics['bleu_signature']})")
    print(f"{metrics['steps']} steps in {metrics['train_seconds']:.0f}s, "
          f"{metrics['train_tokens_per_second']:,} target tokens/s; model in {args.out}")
    return 0
