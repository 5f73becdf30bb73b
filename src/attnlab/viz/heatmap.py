"""Attention heatmaps: queries on the y axis, keys on the x axis, tokens as tick labels."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from torch import Tensor  # noqa: E402

from attnlab.viz.figures import save_png  # noqa: E402


def plot_attention(
    weights: Tensor,
    query_tokens: Sequence[str],
    key_tokens: Sequence[str],
    path: str | Path,
    *,
    title: str = "attention",
    xlabel: str = "keys (source)",
    ylabel: str = "queries (target)",
) -> Path:
    """Save a (T, S) attention matrix as a PNG heatmap and return its path."""
    if weights.dim() != 2:
        raise ValueError(f"weights must be (queries, keys), got shape {tuple(weights.shape)}")
    T, S = weights.shape
    if len(query_tokens) != T or len(key_tokens) != S:
        raise ValueError(
            f"need {T} query and {S} key labels, got {len(query_tokens)} and {len(key_tokens)}"
        )
    size = max(4.0, 0.28 * max(T, S) + 2)
    # at least 2.5 inches high: a one-token target against a long source still has room for
    # the key labels (tight_layout gives up otherwise)
    fig, ax = plt.subplots(figsize=(size * S / max(T, S) + 1.5, max(2.5, size * T / max(T, S))))
    image = ax.imshow(weights.detach().float().cpu().numpy(), cmap="viridis", vmin=0.0,
                      aspect="auto")
    ax.set_xticks(range(S), [str(t) for t in key_tokens], rotation=90, fontsize=7)
    ax.set_yticks(range(T), [str(t) for t in query_tokens], fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return save_png(fig, path, dpi=120)
