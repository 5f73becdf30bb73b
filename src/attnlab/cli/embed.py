"""Embed texts and images with a CLIP model folder (Radford et al. 2021): each L2-normalised
embedding in the shared space, and with both texts and images their cosine similarities.

    attnlab embed --model runs/clip --text "a large three above a small one" "a small five"
    attnlab embed --model runs/clip --image scene.png other.png --out images.npy
    attnlab embed --model runs/clip --text "a large three" "a large seven" --image three.png

Without --out each embedding is printed as one JSON line (its first values, its size and its
norm); --out FILE.npy writes them all as one float32 (N, P) array, the texts first, then the
images, in the order given. With texts and images both, a table of the cosine similarity of
every image (rows) with every text (columns) follows, the best text of each image starred.
Texts are framed with the folder's tokenizer.json; images are read as its
preprocessor_config.json says.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from attnlab.cli.settings import positive_int

FIRST = 8  # values of each embedding shown in its JSON line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="a CLIP model folder (attnlab train clip)")
    parser.add_argument("--text", nargs="+", action="extend", default=[], metavar="TEXT",
                        help="texts to embed (may be given more than once)")
    parser.add_argument("--image", nargs="+", action="extend", default=[], metavar="FILE",
                        help="image files to embed (png, jpg, ...)")
    parser.add_argument("--out", default=None, metavar="FILE.npy",
                        help="write the embeddings as one float32 (N, P) .npy array (texts, "
                             "then images) instead of printing them")
    parser.add_argument("--batch-size", type=positive_int, default=64,
                        help="texts or images per forward pass (default 64)")


@torch.no_grad()
def embed_texts(model: torch.nn.Module, folder: str, texts: list[str],
                batch_size: int) -> torch.Tensor:
    """(len(texts), P) L2-normalised text embeddings."""
    from attnlab.io import load_tokenizer
    from attnlab.tokenizers.captions import encode_captions

    ids, mask = encode_captions(load_tokenizer(folder), texts, model.config.text_max_len)
    out = [model.get_text_features(ids[i:i + batch_size], mask[i:i + batch_size]).float()
           for i in range(0, len(texts), batch_size)]
    return torch.nn.functional.normalize(torch.cat(out), dim=-1)


@torch.no_grad()
def embed_images(model: torch.nn.Module, folder: str, paths: list[str],
                 batch_size: int) -> torch.Tensor:
    """(len(paths), P) L2-normalised image embeddings."""
    from attnlab.data.model_inputs import model_inputs

    out = [model.get_image_features(
        model_inputs(folder, model.config, paths[i:i + batch_size]).values).float()
        for i in range(0, len(paths), batch_size)]
    return torch.nn.functional.normalize(torch.cat(out), dim=-1)


def similarity_table(texts: list[str], images: list[str], similarity: torch.Tensor) -> str:
    """similarity (images, texts) as aligned lines: a legend of the texts, then one row per
    image with its cosine to each text, the highest starred."""
    legend = [f"T{j + 1}: {text}" for j, text in enumerate(texts)]
    names = [Path(p).name for p in images]
    width = max(len("image"), *(len(n) for n in names))
    header = f"{'image':<{width}}" + "".join(f"{f'T{j + 1}':>9}" for j in range(len(texts)))
    rows = []
    for name, row in zip(names, similarity.tolist(), strict=True):
        best = max(range(len(row)), key=row.__getitem__)
        rows.append(f"{name:<{width}}" + "".join(
            f"{value:>8.3f}{'*' if j == best else ' '}" for j, value in enumerate(row)))
    return "\n".join(["cosine similarity (rows: images, columns: texts)", *legend, header,
                      *rows])


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from attnlab.errors import ConfigError
    from attnlab.models.auto import from_pretrained
    from attnlab.serialization import atomic_write

    if not args.text and not args.image:
        raise ConfigError("--text / --image: give at least one text or image to embed")
    if args.out is not None and Path(args.out).suffix != ".npy":
        raise ConfigError(f"--out must name a .npy file, got {args.out!r}")
    model = from_pretrained(args.model).eval()
    model_type = type(model.config).model_type
    if model_type != "clip":
        raise ConfigError(f"--model: embed needs a CLIP model folder (text and images in one "
                          f"space); {args.model} is a {model_type!r} model")
    texts = (embed_texts(model, args.model, args.text, args.batch_size) if args.text
             else None)
    images = (embed_images(model, args.model, args.image, args.batch_size) if args.image
              else None)
    if args.out is not None:
        rows = torch.cat([e for e in (texts, images) if e is not None]).numpy()  # (N, P)

        def write(tmp: str) -> None:
            with open(tmp, "wb") as handle:
                np.save(handle, rows.astype(np.float32))

        atomic_write(args.out, write)
        order = []
        if args.text:
            order.append(f"rows 0-{len(args.text) - 1} the texts")
        if args.image:
            first = len(args.text)
            order.append(f"rows {first}-{first + len(args.image) - 1} the images")
        print(f"wrote {rows.shape[0]} x {rows.shape[1]} float32 embeddings to {args.out} "
              f"({', '.join(order)}, in the order given)")
    else:
        for kind, names, embeddings in (("text", args.text, texts),
                                        ("image", args.image, images)):
            for name, vector in zip(names, embeddings if embeddings is not None else [],
                                    strict=True):
                print(json.dumps({kind: name, "dims": int(vector.numel()),
                                  "norm": round(float(vector.norm()), 5),
                                  "first": [round(v, 5) for v in vector[:FIRST].tolist()]}))
    if texts is not None and images is not None:
        print(similarity_table(args.text, args.image, images @ texts.T))
    return 0
