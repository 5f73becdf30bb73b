"""Continue a prompt with a decoder-only model (GPT-2 or LLaMA style) from a local folder that
holds config.json, model.safetensors (or pytorch_model.bin) and tokenizer.json, written by
Hugging Face `transformers` or by attnlab. The text streams as it is generated.

    attnlab generate --model DIR --prompt "Once upon a time" --max-new-tokens 50
    attnlab generate --model DIR --prompt "..." --do-sample --temperature 0.8 --top-p 0.95
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from attnlab.cli.train import positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model folder (HF or attnlab)")
    parser.add_argument("--prompt", required=True, help="text to continue")
    parser.add_argument("--max-new-tokens", type=positive_int, default=50)
    parser.add_argument("--do-sample", action="store_true", help="sample instead of greedy")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=0, help="0 = off")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus mass, (0, 1]")
    parser.add_argument("--repetition-penalty", type=float, default=1.0, help="1 = off")
    parser.add_argument("--seed", type=int, default=None)


def run(args: argparse.Namespace) -> int:
    from tokenizers import Tokenizer

    import attnlab
    from attnlab.generation import stream_text

    path = Path(args.model) / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the model folder needs its tokenizer.json")
    tokenizer = Tokenizer.from_file(str(path))
    model = attnlab.from_pretrained(args.model)
    if not hasattr(model, "generate"):
        raise ValueError(f"{args.model} holds a {type(model).__name__}, not a decoder-only "
                         "model; use `attnlab translate` for translation models")
    if not args.prompt:
        raise ValueError("--prompt is empty")
    sys.stdout.write(args.prompt)
    for piece in stream_text(model, tokenizer, args.prompt, max_new_tokens=args.max_new_tokens,
                             do_sample=args.do_sample, temperature=args.temperature,
                             top_k=args.top_k, top_p=args.top_p,
                             repetition_penalty=args.repetition_penalty, seed=args.seed):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0
