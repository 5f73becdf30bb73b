"""How one word's representation moves with its context, layer by layer.

    attnlab embed-compare --model runs/mlm --word apple \\
        --context "the apple was juicy and sweet" --context "apple stock crashed today" \\
        [--context ...] [--control the] --out runs/embed

For each context the word's vector (mean of its sub-tokens) is taken at the embedding output
and after every layer (BERT's encoder, GPT-2 / LLaMA's decoder, the encoder of a translation
Transformer or T5); the command prints the cosine similarity between every pair of contexts
per layer and writes embed_compare.png (similarity vs layer) and embed_compare.json. With
--control WORD (a word that keeps its meaning and appears in every context), the same curve for
that word shows how much any word drifts with its context.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from attnlab.errors import ConfigError
from attnlab.serialization import atomic_write


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True,
                        help="a model folder (config.json, weights, tokenizer.json)")
    parser.add_argument("--word", required=True, help="the word to follow across contexts")
    parser.add_argument("--context", action="append", required=True, metavar="TEXT",
                        help="a text containing the word; give it at least twice")
    parser.add_argument("--control", default=None, metavar="WORD",
                        help="a word in every context whose meaning does not change")
    parser.add_argument("--out", required=True, help="folder for embed_compare.png / .json")


def run(args: argparse.Namespace) -> int:
    from attnlab.viz.embeddings import compare_contexts, plot_comparison
    from attnlab.viz.extract import load_model_and_tokenizer

    if len(args.context) < 2:
        raise ConfigError(f"--context must be given at least twice, got {len(args.context)}")
    model, tokenizer = load_model_and_tokenizer(args.model)
    result = compare_contexts(model, tokenizer, args.word, args.context, control=args.control)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(result.table())
    png = plot_comparison(result, out / "embed_compare.png",
                          title=f"{args.word!r} across contexts ({Path(args.model).name})")
    text = json.dumps({"model": str(args.model), **result.to_json()}, indent=2) + "\n"
    json_path = atomic_write(out / "embed_compare.json", lambda t: Path(t).write_text(text))
    print(png)
    print(json_path)
    return 0
