"""Score a trained translation model with sacreBLEU: corpus BLEU and chrF with their
signatures, and BLEU by source-length bucket (1-10, 11-20, 21-30, 31+ words).

    attnlab evaluate --model runs/translate --split test
    attnlab evaluate --model runs/translate --src my.src --ref my.ref
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from attnlab.cli.train import positive_int
from attnlab.data.parallel import read_parallel_files
from attnlab.models.io import from_pretrained
from attnlab.tasks.translation import evaluate_pairs, load_settings, prepare_corpus
from attnlab.tokenizers import Tokenizer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="a model folder written by attnlab train")
    parser.add_argument("--split", default="test", choices=("train", "valid", "test"),
                        help="a split of the corpus the model was trained on")
    parser.add_argument("--src", default=None, help="source file (one sentence per line)")
    parser.add_argument("--ref", default=None, help="reference file, line-aligned with --src")
    parser.add_argument("--beam-size", type=positive_int, default=4)
    parser.add_argument("--length-penalty", type=float, default=0.6)
    parser.add_argument("--json", action="store_true", help="print the scores as JSON")


def run(args: argparse.Namespace) -> int:
    if (args.src is None) != (args.ref is None):
        raise ValueError("--src and --ref go together")
    model = from_pretrained(args.model)
    tokenizer = Tokenizer.load(args.model)
    if args.src is not None:
        pairs = read_parallel_files(Path(args.src), Path(args.ref))
        name = f"{args.src} vs {args.ref}"
    else:
        pairs = prepare_corpus(load_settings(args.model)).split(args.split)
        name = f"{args.split} split"
    scores = evaluate_pairs(model, tokenizer, pairs, beam_size=args.beam_size,
                            length_penalty=args.length_penalty)
    scores.pop("hypotheses")
    if args.json:
        print(json.dumps(scores, indent=2))
        return 0
    print(f"{name}: {scores['sentences']} sentences, beam {args.beam_size}")
    print(f"BLEU {scores['bleu']:6.2f}   {scores['bleu_signature']}")
    print(f"chrF {scores['chrf']:6.2f}   {scores['chrf_signature']}")
    print("BLEU by source length (words):")
    for label, bucket in scores["buckets"].items():
        print(f"  {label:>6}: {bucket['bleu']:6.2f}  ({bucket['sentences']} sentences)")
    return 0
