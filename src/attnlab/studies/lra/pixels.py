"""Images as pixel sequences, after the Image task of Long Range Arena (Tay et al., 2021), which
classifies CIFAR-10 as a sequence of 1,024 grey levels without any 2-D inductive bias.

Here the images are scikit-learn's `load_digits` (1,797 handwritten digits of 8x8 pixels with
17 intensity levels, bundled with the package, so nothing is downloaded), upsampled to 32x32
with bilinear interpolation, quantised to `levels` grey levels (256 by default: token = level)
and flattened row by row into 1,024 tokens. Ten classes; the train/test split is a fixed seeded
permutation, the same for every run.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from attnlab.studies.lra.data import Split, TaskData

SIDE = 32


def load_digit_images() -> tuple[Tensor, Tensor]:
    """(images (N, 8, 8) float in [0, 1], labels (N,)) from scikit-learn's bundled copy."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise ImportError("the pixels task needs scikit-learn (pip install scikit-learn): "
                          "its load_digits data ships inside the package") from error
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32) / 16.0  # (N, 8, 8)
    return images, torch.tensor(digits.target, dtype=torch.long)


def to_tokens(images: Tensor, levels: int, side: int = SIDE) -> Tensor:
    """(N, h, w) intensities in [0, 1] -> (N, side * side) grey-level tokens in [0, levels)."""
    if not 2 <= levels <= 256:
        raise ValueError(f"levels must be in [2, 256], got {levels}")
    big = F.interpolate(images[:, None], size=(side, side), mode="bilinear",
                        align_corners=False)[:, 0]  # (N, side, side)
    quantised = torch.round(big.clamp(0.0, 1.0) * (levels - 1)).long()  # (N, side, side)
    return quantised.flatten(1)  # (N, side * side)


def make_pixels(*, levels: int = 256, test_fraction: float = 0.2, split_seed: int = 0) -> TaskData:
    """The task: token id = grey level + 1 (id 0 is padding, which never occurs)."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    images, labels = load_digit_images()
    tokens = to_tokens(images, levels) + 1  # (N, 1024)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(split_seed))
    n_test = round(len(labels) * test_fraction)
    test_rows, train_rows = order[:n_test], order[n_test:]
    mask = torch.ones_like(tokens, dtype=torch.bool)  # (N, 1024): no padding

    def split(rows: Tensor) -> Split:
        return Split(tokens[rows], mask[rows], labels[rows])

    vocab = ("[PAD]", *(f"g{level}" for level in range(levels)))
    return TaskData("pixels", vocab, 10, SIDE * SIDE, split(train_rows), split(test_rows),
                    notes=f"load_digits 8x8 -> {SIDE}x{SIDE} bilinear, {levels} grey levels, "
                          f"{len(train_rows)} train / {n_test} test images")
