"""Draw images from captions with a text-to-image run folder (`attnlab train text2image`;
Ramesh et al. 2021): the decoder samples image codes for each caption (top-k, temperature,
seeded) and the folder's VQ-VAE (image_tokenizer/) turns them into pixels. With --clip, a CLIP
folder (`attnlab train clip`) scores every sample against its caption and the samples are shown
best first with their scores, as the paper reranked its samples. One PNG: a row per caption.

    attnlab imagine --model runs/t2i-emoji "a smiling face with sunglasses" --samples 8 \\
        --out grid.png
    attnlab imagine --model runs/t2i-scenes "a large three to the left of a small seven" \\
        "a small five" --clip runs/clip-scenes --seed 3
"""

from __future__ import annotations

import argparse
from pathlib import Path

from attnlab.cli.settings import positive_int
from attnlab.errors import ConfigError


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True,
                        help="text-to-image run folder (config.json, tokenizer.json, "
                             "image_tokenizer/)")
    parser.add_argument("captions", nargs="+", metavar="CAPTION", help="what to draw")
    parser.add_argument("--samples", type=positive_int, default=8,
                        help="images per caption (default 8)")
    parser.add_argument("--out", default="imagine.png",
                        help="the PNG grid to write (default imagine.png)")
    parser.add_argument("--clip", default=None, metavar="DIR",
                        help="a CLIP run folder: order each caption's samples best first by "
                             "CLIP score, shown under each image")
    parser.add_argument("--top-k", type=non_negative_int, default=64,
                        help="sample among the k likeliest codes (0: all; default 64)")
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="sampling temperature, > 0 (default 1.0)")
    parser.add_argument("--seed", type=int, default=0,
                        help="the same seed draws the same images (default 0)")
    parser.add_argument("--batch-size", type=positive_int, default=256,
                        help="sequences sampled at once (default 256)")


def run(args: argparse.Namespace) -> int:
    from attnlab.tasks.imagine import imagine, load_clip, load_pipeline, rerank, save_grid

    if not args.temperature > 0:
        raise ConfigError(f"--temperature must be > 0, got {args.temperature}")
    empty = [c for c in args.captions if not c.strip()]
    if empty:
        raise ConfigError(f"CAPTION: every caption must be non-empty text, got {empty[0]!r}")
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise ConfigError(f"--out must name a .png file, got {args.out!r}")
    pipeline = load_pipeline(args.model, what="--model")
    clip = load_clip(args.clip, what="--clip") if args.clip else None  # before sampling
    images = imagine(pipeline, args.captions, args.samples, top_k=args.top_k,
                     temperature=args.temperature, seed=args.seed,
                     batch_size=args.batch_size)  # (N, S, C, H, W)
    scores = None
    if clip is not None:
        order, scores = rerank(clip, args.captions, images)
        rows = order.new_tensor(range(len(args.captions)))[:, None]
        images, scores = images[rows, order], scores.gather(1, order)
    save_grid(images, out, args.captions, scores)
    print(f"wrote {out}: {len(args.captions)} caption(s) x {args.samples} sample(s)"
          + (", best first by CLIP score" if clip is not None else ""))
    if scores is not None:
        for caption, row in zip(args.captions, scores.tolist(), strict=True):
            print(f"{caption}: CLIP scores " + " ".join(f"{v:.3f}" for v in row))
    return 0
