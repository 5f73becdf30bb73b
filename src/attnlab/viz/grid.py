"""Pictures of one attention view: every layer x head in one grid (the overview Clark et al.
2019, "What Does BERT Look At?", draw), one heatmap per chosen layer and head, the rollout and,
for cross-attention, the alignment of the sharpest layer (Bahdanau et al. 2015, Fig. 3)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from torch import Tensor  # noqa: E402

from attnlab.errors import ConfigError  # noqa: E402
from attnlab.viz.figures import save_png  # noqa: E402
from attnlab.viz.heads import head_name  # noqa: E402
from attnlab.viz.heatmap import plot_attention  # noqa: E402
from attnlab.viz.maps import AttentionView  # noqa: E402

MAX_TICKS = 24  # beyond this many tokens a grid cell shows no labels (they would overlap)


def slug(name: str) -> str:
    """A view name as a file-name stem: "decoder self-attention" -> "decoder-self-attention"."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "view"


def check_indices(values: Sequence[int] | None, count: int, what: str) -> list[int]:
    """0-based indices (all when None); each must lie in [0, count). The error counts from 1,
    as the CLI and the file names do."""
    if values is None:
        return list(range(count))
    bad = [v + 1 for v in values if not 0 <= v < count]
    if bad:
        raise ConfigError(f"--{what}: {what} {bad} out of range; this view has {count} "
                         f"{what} (1 .. {count})")
    return list(dict.fromkeys(values))


def plot_grid(view: AttentionView, path: str | Path, layers: Sequence[int] | None = None,
              heads: Sequence[int] | None = None) -> Path:
    """All chosen layers (rows) x heads (columns) of `view` in one PNG; one colour scale [0, 1]
    so heads can be compared; tokens on the outer axes when there are few enough."""
    rows = check_indices(layers, view.n_layers, "layers")
    cols = check_indices(heads, view.n_heads, "heads")
    T, S = view.weights.shape[2:]
    labelled = max(T, S) <= MAX_TICKS
    cell = 2.2 if labelled else 1.6
    fig, axes = plt.subplots(len(rows), len(cols), squeeze=False,
                             figsize=(cell * len(cols) + 1.5, cell * len(rows) * T / max(T, S)
                                      + 1.0))
    image = None
    for r, layer in enumerate(rows):
        for c, head in enumerate(cols):
            ax = axes[r][c]
            image = ax.imshow(view.weights[layer, head].numpy(), cmap="viridis", vmin=0.0,
                              vmax=1.0, aspect="auto", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"head {head + 1}", fontsize=8)
            if c == 0:
                ax.set_ylabel(f"layer {layer + 1}", fontsize=8)
                if labelled:
                    ax.set_yticks(range(T), view.query_tokens, fontsize=5)
            if r == len(rows) - 1 and labelled:
                ax.set_xticks(range(S), view.key_tokens, rotation=90, fontsize=5)
    fig.suptitle(f"{view.name}: layers x heads", fontsize=10)
    fig.colorbar(image, ax=axes, fraction=0.02, pad=0.02)
    return save_png(fig, path, tight=False)


def _labels(view: AttentionView) -> dict[str, str]:
    if view.kind == "cross":
        return {"xlabel": "source tokens (keys)", "ylabel": "predicted tokens (queries)"}
    return {"xlabel": "keys", "ylabel": "queries"}


def plot_heads(view: AttentionView, directory: str | Path, layers: Sequence[int] | None = None,
               heads: Sequence[int] | None = None) -> list[Path]:
    """One heatmap per chosen (layer, head): `<view>_L<l>H<h>.png`, numbered from 1, the name
    `attnlab heads` prints for the same head (`viz.heads.head_name`)."""
    directory = Path(directory)
    paths = []
    for layer in check_indices(layers, view.n_layers, "layers"):
        for head in check_indices(heads, view.n_heads, "heads"):
            paths.append(plot_attention(
                view.weights[layer, head], view.query_tokens, view.key_tokens,
                directory / f"{slug(view.name)}_{head_name(layer, head)}.png",
                title=f"{view.name}, layer {layer + 1}, head {head + 1} "
                      f"({head_name(layer, head)})", **_labels(view)))
    return paths


def sharpest_layer(weights: Tensor) -> int:
    """The layer whose head-mean attention (L, H, T, S) has the lowest mean row entropy."""
    mean = weights.mean(1)  # (L, T, S)
    entropy = -(mean * mean.clamp_min(1e-12).log()).sum(-1).mean(-1)  # (L,)
    return int(entropy.argmin())


def plot_alignment(view: AttentionView, path: str | Path) -> Path:
    """Head-mean cross-attention of the sharpest layer: the soft alignment of a translation."""
    layer = sharpest_layer(view.weights)
    return plot_attention(
        view.weights[layer].mean(0), view.query_tokens, view.key_tokens, path,
        title=f"{view.name} as alignment: layer {layer + 1} of {view.n_layers}, mean over heads",
        **_labels(view))


def plot_rollout(view: AttentionView, path: str | Path) -> Path:
    """The last layer of a rollout view (see viz/rollout.py) as one heatmap."""
    return plot_attention(view.weights[-1, 0], view.query_tokens, view.key_tokens, path,
                          title=f"{view.name} (Abnar & Zuidema 2020), all {view.n_layers} layers",
                          xlabel="input tokens", ylabel="positions")
