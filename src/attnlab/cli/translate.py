"""Translate with a trained model: sentences as arguments, or one per line on stdin.

A folder written by `attnlab train translate` (Transformer, RNN or ConvS2S with attnlab's
tokenizer) translates as in training's evaluation (batched beam search). Any other generating
folder with its own tokenizer.json works too, one line at a time: an encoder-decoder such as T5
reads each line (include its task prefix, e.g. "translate English to German: ") and a
decoder-only model continues it. An encoder-only folder is refused.

    attnlab translate --model runs/translate "the old farmer sells red apples ."
    cat input.txt | attnlab translate --model runs/translate > output.txt
    attnlab translate --model T5_DIR "translate English to German: The house is wonderful."
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from attnlab.cli.generate import output_text, require_generating, source_ids
from attnlab.cli.train import positive_int
from attnlab.errors import ConfigError
from attnlab.generation.beam import MAX_LEN_OFFSET
from attnlab.generation.mixin import DECODER_ONLY, ENCODER_DECODER, model_kind
from attnlab.models.io import from_pretrained
from attnlab.tasks.translation import translate
from attnlab.tokenizers import Tokenizer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="a model folder written by attnlab train, "
                        "or any generating model folder with its tokenizer.json")
    parser.add_argument("sentences", nargs="*", help="sentences (default: read stdin)")
    parser.add_argument("--beam-size", type=positive_int, default=4)
    parser.add_argument("--length-penalty", type=float, default=0.6)


def translate_lines(model: Any, tokenizer: Any, sentences: list[str], *, beam_size: int,
                    length_penalty: float) -> list[str]:
    """One output per sentence with `model.generate` and a `tokenizers.Tokenizer`: an
    encoder-decoder's output, or a decoder-only model's continuation; at most the source
    length + 50 new tokens (the paper's limit), within the model's context."""
    import torch

    kind, config, outputs = model_kind(model), model.config, []
    for sentence in sentences:
        if kind == DECODER_ONLY:
            ids = tokenizer.encode(sentence).ids
            room = config.max_seq_len - len(ids)
        else:
            ids = source_ids(tokenizer, sentence, config)
            room = config.max_seq_len - 1
        if room < 1 or len(ids) > config.max_seq_len:
            raise ConfigError(f"sentence {sentence[:40]!r} has {len(ids)} tokens, too many for "
                              f"the model's max_seq_len={config.max_seq_len}; split it")
        out = model.generate(torch.tensor([ids]), num_beams=beam_size,
                             length_penalty=length_penalty,
                             max_new_tokens=min(len(ids) + MAX_LEN_OFFSET, room))
        new = out[0, len(ids):] if kind == DECODER_ONLY else out[0]
        outputs.append(output_text(tokenizer, new.tolist(), config).strip())
    return outputs


def run(args: argparse.Namespace) -> int:
    model = from_pretrained(args.model)
    kind = require_generating(model, args.model, "translate")
    sentences = args.sentences or [line.rstrip("\n") for line in sys.stdin]
    empty = [i + 1 for i, s in enumerate(sentences) if not s.strip()]
    if empty:
        raise ValueError(f"empty input sentence(s) at position(s) {empty[:10]}")
    try:
        tokenizer = Tokenizer.load(args.model)
    except ValueError:  # not attnlab's special ids (T5's, GPT-2's): the folder's own tokenizer
        tokenizer = None
    if tokenizer is not None and kind == ENCODER_DECODER:
        lines = translate(model, tokenizer, sentences, beam_size=args.beam_size,
                          length_penalty=args.length_penalty)
    else:
        from tokenizers import Tokenizer as HFTokenizer

        backend = (tokenizer.backend if tokenizer is not None
                   else HFTokenizer.from_file(str(Path(args.model) / "tokenizer.json")))
        lines = translate_lines(model, backend, sentences, beam_size=args.beam_size,
                                length_penalty=args.length_penalty)
    for line in lines:
        print(line)
    return 0
