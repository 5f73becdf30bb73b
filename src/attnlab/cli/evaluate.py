"""Score a trained translation model with sacreBLEU: corpus BLEU and chrF with their
signatures, and BLEU by source-length bucket (1-10, 11-20, 21-30, 31+ words).

    attnlab evaluate --model runs/translate --split test
    attnlab evaluate --model runs/translate --src my.src --ref my.ref

Decoding uses the run's own settings (beam size, length penalty, max_tokens from its
train_settings.json) unless a flag says otherwise; on the built-in corpus only the split asked
for is generated (test and valid never need the training pairs).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from attnlab.cli.settings import positive_int
from attnlab.data.parallel import read_parallel_files
from attnlab.errors import ConfigError
from attnlab.io import load_tokenizer
from attnlab.models.auto import from_pretrained
from attnlab.tasks.translation import (
    TranslationSettings,
    evaluate_pairs,
    load_settings,
    prepare_corpus,
)
from attnlab.training.settings import SETTINGS_NAME


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="a model folder written by attnlab train")
    parser.add_argument("--split", default="test", choices=("train", "valid", "test"),
                        help="a split of the corpus the model was trained on")
    parser.add_argument("--src", default=None, help="source file (one sentence per line)")
    parser.add_argument("--ref", default=None, help="reference file, line-aligned with --src")
    parser.add_argument("--beam-size", type=positive_int, default=None,
                        help="beam size (default: the run's, else 4)")
    parser.add_argument("--length-penalty", type=float, default=None,
                        help="GNMT length penalty alpha (default: the run's, else 0.6)")
    parser.add_argument("--max-tokens", type=positive_int, default=None,
                        help="padded tokens per decoding batch (default: the run's)")
    parser.add_argument("--json", action="store_true", help="print the scores as JSON")


def run(args: argparse.Namespace) -> int:
    if (args.src is None) != (args.ref is None):
        raise ConfigError("--src and --ref go together: got "
                          + ("--src without --ref" if args.ref is None else "--ref without --src"))
    # A folder without train_settings.json (e.g. averaged into another folder) decodes with
    # the defaults of the translation task.
    has_run = (Path(args.model) / SETTINGS_NAME).is_file()
    settings = load_settings(args.model) if has_run or args.src is None else None
    settings = settings or TranslationSettings()
    model = from_pretrained(args.model)
    tokenizer = load_tokenizer(args.model)
    if args.src is not None:
        # The run's Unicode form (NFC by default), as its own test split was read.
        pairs = read_parallel_files(Path(args.src), Path(args.ref),
                                    normalize=settings.normalize)
        name = f"{args.src} vs {args.ref}"
    else:
        pairs = prepare_corpus(settings, splits=(args.split,)).split(args.split)
        name = f"{args.split} split"
    beam_size = args.beam_size or settings.beam_size
    # Threads come from `attnlab [--threads N]` (cli/main.py); the bar shows the beam search,
    # the only step here that takes minutes on a CPU.
    scores = evaluate_pairs(
        model, tokenizer, pairs, beam_size=beam_size,
        length_penalty=settings.length_penalty if args.length_penalty is None
        else args.length_penalty,
        max_tokens=args.max_tokens or settings.max_tokens, progress=True)
    scores.pop("hypotheses")
    if args.json:
        print(json.dumps(scores, indent=2))
        return 0
    print(f"{name}: {scores['sentences']} sentences, beam {beam_size}")
    print(f"BLEU {scores['bleu']:6.2f}   {scores['bleu_signature']}")
    print(f"chrF {scores['chrf']:6.2f}   {scores['chrf_signature']}")
    print("BLEU by source length (words):")
    for label, bucket in scores["buckets"].items():
        print(f"  {label:>6}: {bucket['bleu']:6.2f}  ({bucket['sentences']} sentences)")
    return 0
