"""Classify image or audio files with a model folder: the top-k classes of each file with their
probabilities. A ViT / DeiT / AST folder (written by `attnlab train image|audio` or by
transformers) knows its classes; a CLIP folder (`attnlab train clip`, Radford et al. 2021,
sec. 3.1.4) classifies zero-shot against class names you give, each put into a prompt.

    attnlab classify --model runs/image shirt.png boot.jpg
    attnlab classify --model runs/audio yes.wav --top-k 3 --json
    attnlab classify --model runs/clip scene.png --labels zero one two three four five six \\
        seven eight nine --template "a large {}"
    attnlab classify --model runs/clip cat.png --labels "a photo of a {}" cat dog

The folder's preprocessor_config.json says how files become inputs (image size and
normalisation; filterbank settings); class names come from its config (id2label), or for
CLIP from --labels: the probabilities are the softmax of CLIP's logits_per_image over the
prompts. Give the files before --labels (or after `--`): --labels takes every name that
follows it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from attnlab.cli.settings import positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True,
                        help="model folder (ViT, DeiT, AST, or CLIP with --labels) with "
                             "preprocessor_config.json")
    parser.add_argument("files", nargs="+", metavar="FILE",
                        help="images (png, jpg, ...) or audio (wav, flac, ...)")
    parser.add_argument("--labels", nargs="+", metavar="NAME", default=None,
                        help="CLIP zero-shot: the class names (a first entry holding {} is "
                             "taken as the --template)")
    parser.add_argument("--template", default=None,
                        help="CLIP zero-shot: the prompt of each label, {} standing for the "
                             "name, e.g. \"a photo of a {}\" (default \"{}\": the name alone)")
    parser.add_argument("--top-k", type=positive_int, default=5,
                        help="classes shown per file (default 5)")
    parser.add_argument("--batch-size", type=positive_int, default=64,
                        help="files per forward pass (default 64)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object per file instead of a table")


def class_names(config: object, count: int) -> list[str]:
    labels = tuple(getattr(config, "labels", ()) or ())
    return list(labels) if len(labels) == count else [f"LABEL_{i}" for i in range(count)]


def zero_shot_classes(labels: list[str] | None, template: str | None) -> tuple[str, list[str]]:
    """(template, names) of --labels / --template; ConfigError naming the flag."""
    from attnlab.errors import ConfigError

    names = list(labels or [])
    if names and "{}" in names[0]:
        if template is not None:
            raise ConfigError(f"--labels: the first label {names[0]!r} looks like a template "
                              f"and --template {template!r} is given too; give one template")
        template, names = names[0], names[1:]
    if len(names) < 2:
        raise ConfigError(f"--labels: a CLIP model classifies zero-shot among the class names "
                          f"you give; need at least 2, got {names} (e.g. --labels cat dog "
                          f"--template \"a photo of a {{}}\")")
    if len(set(names)) != len(names):
        repeated = sorted({n for n in names if names.count(n) > 1})
        raise ConfigError(f"--labels: each class name once, got {repeated} more than once")
    return template or "{}", names


def print_ranked(args: argparse.Namespace, paths: list[Any], probs: torch.Tensor,
                 names: list[str]) -> None:
    """The top-k of each file's (classes,) probabilities, as a line or a JSON object."""
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


@torch.no_grad()
def run(args: argparse.Namespace) -> int:
    from attnlab.data.model_inputs import model_inputs
    from attnlab.errors import ConfigError
    from attnlab.models.auto import from_pretrained

    model = from_pretrained(args.model).eval()
    model_type = type(model.config).model_type
    if model_type == "clip":
        return run_zero_shot(args, model)
    for flag in ("labels", "template"):
        if getattr(args, flag) is not None:
            raise ConfigError(f"--{flag}: zero-shot labels need a CLIP model folder; "
                              f"{args.model} is a {model_type!r} model with its own classes "
                              "(leave out --labels and --template)")
    if not getattr(model.config, "num_labels", 0):
        raise ConfigError(f"--model {args.model}: the model has no classification head "
                          "(num_labels 0)")
    for start in range(0, len(args.files), args.batch_size):
        paths = args.files[start:start + args.batch_size]
        inputs = model_inputs(args.model, model.config, paths)
        probs = model(inputs.values).logits.float().softmax(-1)  # (N, classes)
        print_ranked(args, paths, probs, class_names(model.config, probs.size(-1)))
    return 0


def run_zero_shot(args: argparse.Namespace, model: torch.nn.Module) -> int:
    """CLIP: each file against the prompts of --labels; softmax of logits_per_image."""
    from attnlab.data.model_inputs import model_inputs
    from attnlab.evaluation.retrieval import prompts_of
    from attnlab.io import load_tokenizer
    from attnlab.tokenizers.captions import encode_captions

    template, names = zero_shot_classes(args.labels, args.template)
    ids, mask = encode_captions(load_tokenizer(args.model), prompts_of(template, names),
                                model.config.text_max_len)  # (K, L)
    for start in range(0, len(args.files), args.batch_size):
        paths = args.files[start:start + args.batch_size]
        inputs = model_inputs(args.model, model.config, paths)
        logits = model(ids, inputs.values, mask).logits_per_image  # (N, K)
        print_ranked(args, paths, logits.float().softmax(-1), names)
    return 0
