"""Translate with a trained model: sentences as arguments, or one per line on stdin.

Any encoder-decoder folder translates as in training's evaluation (batched beam search): one
written by `attnlab train translate` (Transformer, RNN, ConvS2S) or a T5 folder with its own
tokenizer.json (give T5 its task prefix, e.g. "translate English to German: "). A decoder-only
folder continues each line (prompt it to translate). An encoder-only folder is refused.
Output line i is the translation of input line i: a blank input line gives a blank output line.

    attnlab translate --model runs/translate "the old farmer sells red apples ."
    cat input.txt | attnlab translate --model runs/translate > output.txt
    attnlab translate --model T5_DIR "translate English to German: The house is wonderful."
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from attnlab.cli.generate import (
    add_decoding_flags,
    output_text,
    ready_for_decoding,
    require_generating,
)
from attnlab.cli.settings import positive_int
from attnlab.errors import DataError
from attnlab.generation.beam import MAX_LEN_OFFSET, check_beam_arguments
from attnlab.generation.mixin import ENCODER_DECODER
from attnlab.io import hugging_face_beam_rules, load_generation_config, load_tokenizer
from attnlab.models.auto import from_pretrained
from attnlab.tasks.translation import translate
from attnlab.tokenizers import Tokenizer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="a model folder written by attnlab train, "
                        "any generating model folder with its tokenizer.json, or an OPUS-MT "
                        "(Marian) folder (source.spm + vocab.json)")
    parser.add_argument("sentences", nargs="*",
                        help="sentences (default: read stdin, one per line); a blank line "
                             "gives a blank output line, so line counts match")
    parser.add_argument("--beam-size", type=positive_int, default=None,
                        help="beam width (default: the folder's generation_config.json, else 4)")
    parser.add_argument("--length-penalty", type=float, default=None,
                        help="length penalty alpha: hypotheses rank by log P / "
                             "((5 + |Y|) / 6) ** alpha (GNMT) for folders attnlab wrote, by "
                             "log P / |Y| ** alpha for folders transformers wrote, as "
                             "transformers does (with its forced EOS and bad words). Default: "
                             "the folder's generation_config.json, else 0.6 (GNMT) or 1.0")
    add_decoding_flags(parser)


def continue_lines(model: Any, tokenizer: Tokenizer, sentences: list[str], *, beam_size: int,
                   length_penalty: float) -> list[str]:
    """A decoder-only model's continuation of each sentence (`model.generate` with beam
    search), at most its length + 50 new tokens (the paper's limit) within the model's
    context; a blank sentence gives "", as in `translate`."""
    import torch

    config, outputs = model.config, []
    for i, sentence in enumerate(sentences):
        if not sentence.strip():
            outputs.append("")
            continue
        ids = tokenizer.encoding(sentence).ids
        room = config.max_seq_len - len(ids)
        if room < 1:
            raise DataError(f"sentence {i + 1} has {len(ids)} tokens, no room left in the "
                            f"model's max_seq_len={config.max_seq_len}; split it")
        out = model.generate(torch.tensor([ids]), num_beams=beam_size,
                             length_penalty=length_penalty,
                             max_new_tokens=min(len(ids) + MAX_LEN_OFFSET, room))
        outputs.append(output_text(tokenizer, out[0, len(ids):].tolist(), config).strip())
    return outputs


def first(*values: Any) -> Any:
    """The first value that is not None: the flag, then the folder's suggestion, then ours."""
    return next(v for v in values if v is not None)


def run(args: argparse.Namespace) -> int:
    if args.length_penalty is not None:  # flags first, before anything is loaded or printed
        check_beam_arguments(1, args.length_penalty, None)
    model = from_pretrained(args.model)
    kind = require_generating(model, args.model, "translate")
    ready_for_decoding(model, args)
    sentences = args.sentences or [line.rstrip("\r\n") for line in sys.stdin]
    tokenizer = load_tokenizer(args.model)
    suggested = load_generation_config(args.model)
    rules = hugging_face_beam_rules(args.model) if kind == ENCODER_DECODER else {}
    settings: dict[str, Any] = dict(
        beam_size=first(args.beam_size, suggested.get("num_beams"), 4),
        length_penalty=first(args.length_penalty, suggested.get("length_penalty"),
                             rules.pop("length_penalty", None), 0.6))
    check_beam_arguments(settings["beam_size"], settings["length_penalty"], None)
    if rules:  # a folder transformers wrote: its beams, as transformers would search them
        settings["beam_rules"] = rules
    # A blank input line gives a blank output line: line i of the output is always the
    # translation of line i of the input (paste/diff-friendly), and errors count every line.
    decode = translate if kind == ENCODER_DECODER else continue_lines
    for line in decode(model, tokenizer, sentences, **settings):
        print(line)
    return 0
