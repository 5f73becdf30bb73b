"""The confusion matrix of a classifier as a PNG: rows are the true classes, columns the
predicted ones, each cell the share of its row (so classes of any size read alike), with the
count written where it fits."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from torch import Tensor  # noqa: E402

from attnlab.viz.figures import save_png  # noqa: E402


def plot_confusion(confusion: Tensor, classes: list[str], path: str | Path,
                   title: str = "") -> Path:
    """Save `confusion` (n, n) counts, rows true / columns predicted, as a row-normalised
    heat map."""
    n = len(classes)
    if tuple(confusion.shape) != (n, n):
        raise ValueError(f"confusion must be ({n}, {n}) for {n} classes, "
                         f"got {tuple(confusion.shape)}")
    shares = confusion.float() / confusion.sum(1, keepdim=True).clamp(min=1).float()  # (n, n)
    side = min(max(4.0, 0.45 * n + 2.5), 24.0)
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    image = ax.imshow(shares.numpy(), cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(n), classes, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), classes, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if n <= 30:
        for row in range(n):
            for col in range(n):
                count = int(confusion[row, col])
                if count:
                    ax.text(col, row, str(count), ha="center", va="center", fontsize=7,
                            color="white" if shares[row, col] > 0.5 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    ax.set_title(title or "confusion matrix", fontsize=10)
    return save_png(fig, path)
