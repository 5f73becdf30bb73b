"""Classify image or audio files with a model folder (ViT / DeiT / AST, written by `attnlab
train image|audio` or by transformers): the top-k classes of each file with their
probabilities.

    attnlab classify --model runs/image shirt.png boot.jpg
    attnlab classify --model runs/audio yes.wav --top-k 3 --json

The folder's preprocessor_config.json says how files become inputs (image size and
normalisation; filterbank settings); class names come from its config (id2label).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from attnlab.cli.settings import positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True,
                        help="model folder (ViT, DeiT or AST) with preprocessor_config.json")
    parser.add_argument("files", nargs="+", metavar="FILE",
                        help="images (png, jpg, ...) or audio (wav, flac, ...)")
    parser.add_argument("--top-k", type=positive_int, default=5,
                        help="classes shown per file (default 5)")
    parser.add_argument("--batch-size", type=positive_int, default=64,
                        help="files per forward pass (default 64)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object per file instead of a table")


def class_names(config: object, count: int) -> list[str]:
    labels = tuple(getattr(config, "labels", ()) or ())
    return list(labels) if len(labels) == count else [f"LABEL_{i}" for i in range(count)]


@torch.no_grad()
def run(args: argparse.Namespace) -> int:
    from attnlab.data.model_inputs import model_inputs
    from attnlab.errors import ConfigError
    from attnlab.models.auto import from_pretrained

    model = from_pretrained(args.model)
    if not getattr(model.config, "num_labels", 0):
        raise ConfigError(f"--model {args.model}: the model has no classification head "
                          "(num_labels 0)")
    for start in range(0, len(args.files), args.batch_size):
        paths = args.files[start:start + args.batch_size]
        inputs = model_inputs(args.model, model.config, paths)
        probs = model(inputs.values).logits.float().softmax(-1)  # (N, classes)
        names = class_names(model.config, probs.size(-1))
        k = min(args.top_k, probs.size(-1))
        top = probs.topk(k, dim=-1)
        for path, values, indices in zip(paths, top.values, top.indices, strict=True):
            ranked = [(names[i], float(p)) for p, i in zip(values.tolist(), indices.tolist(),
                                                           strict=True)]
            if args.json:
                print(json.dumps({"file": str(path), "top": [{"label": n, "probability":
                                                              round(p, 5)} for n, p in ranked]}))
                continue
            print(f"{Path(path).name}: " + ", ".join(f"{n} {p:.1%}" for n, p in ranked))
    return 0
