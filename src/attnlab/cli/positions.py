"""Plots of positional encodings, computed by the modules the models use (attnlab.nn.position).

    attnlab positions --out runs/positions [--d-model 128 --length 256 --n-heads 8]

Writes sinusoidal.png (the table, positions x dimensions), sinusoidal_similarity.png (dot
product of two encodings vs their offset), rope.png (score of one vector rotated to positions
i and j vs j - i: mean over random vectors and the all-ones vector; head_dim = --d-model) and
alibi.png (bias vs distance per head, with the paper's slopes for --n-heads).
"""

from __future__ import annotations

import argparse

from attnlab.cli.settings import positive_int
from attnlab.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="folder for the PNGs")
    parser.add_argument("--d-model", type=positive_int, default=128,
                        help="width of the sinusoidal table and of the RoPE vectors (even)")
    parser.add_argument("--length", type=positive_int, default=256, help="number of positions")
    parser.add_argument("--n-heads", type=positive_int, default=8, help="ALiBi heads")
    parser.add_argument("--n-vectors", type=positive_int, default=256,
                        help="random vectors averaged in the RoPE plot")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    from attnlab.viz.positions import plot_positions

    if args.d_model % 2:  # sin/cos pairs and RoPE's rotated pairs need an even width
        raise ConfigError(f"--d-model: d_model must be even, got {args.d_model}")
    paths = plot_positions(args.out, d_model=args.d_model, length=args.length,
                           n_heads=args.n_heads, n_vectors=args.n_vectors, seed=args.seed)
    for path in paths:
        print(path)
    return 0
