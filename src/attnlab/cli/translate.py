"""Translate with a trained model: sentences as arguments, or one per line on stdin.

    attnlab translate --model runs/translate "the old farmer sells red apples ."
    cat input.txt | attnlab translate --model runs/translate > output.txt
"""

from __future__ import annotations

import argparse
import sys

from attnlab.cli.train import positive_int
from attnlab.models.io import from_pretrained
from attnlab.tasks.translation import translate
from attnlab.tokenizers import Tokenizer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="a model folder written by attnlab train")
    parser.add_argument("sentences", nargs="*", help="sentences (default: read stdin)")
    parser.add_argument("--beam-size", type=positive_int, default=4)
    parser.add_argument("--length-penalty", type=float, default=0.6)


def run(args: argparse.Namespace) -> int:
    model = from_pretrained(args.model)
    tokenizer = Tokenizer.load(args.model)
    sentences = args.sentences or [line.rstrip("\n") for line in sys.stdin]
    empty = [i + 1 for i, s in enumerate(sentences) if not s.strip()]
    if empty:
        raise ValueError(f"empty input sentence(s) at position(s) {empty[:10]}")
    for line in translate(model, tokenizer, sentences, beam_size=args.beam_size,
                          length_penalty=args.length_penalty):
        print(line)
    return 0
