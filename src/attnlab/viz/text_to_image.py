"""Which caption words each region of a generated image attended to, in a DALL-E-style
decoder (Ramesh et al. 2021): the cross-segment attention from the image part of the sequence
to its text part, drawn as one overlay per word on the generated image.

The sequence is [text (text_len positions) ; image codes (gh * gw, row-major)]. Code k of the
image is sampled from the output at position text_len - 1 + k, so the query that "drew" region
k is that position: its attention to the text positions, averaged over the heads of a layer,
is region k's heat for each word. Rows of the figure are layers (and their mean), columns the
caption's tokens; one colour scale per row, so words of a layer compare directly.

    weights = word_region_attention(attentions, text_len=24, grid=(8, 8), words=[1, 2, 3])
    plot_word_regions(image, weights, ["a", "large", "three"], "viz/words.png")
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from attnlab.serialization import atomic_write  # noqa: E402
from attnlab.viz.figures import save_png  # noqa: E402

ALPHA = 0.6  # opacity of the heat over the image
COLORMAP = "magma"


def word_region_attention(attentions: Sequence[Tensor], text_len: int, grid: tuple[int, int],
                          words: Sequence[int]) -> Tensor:
    """Per layer, the attention each image region paid to each chosen text position.

    attentions: per layer (H, T, T) or (1, H, T, T) with T >= text_len + gh * gw - 1;
    words: text positions (0-based, < text_len). Returns (L, len(words), gh, gw): for region
    k, the mean over heads of the attention from query text_len - 1 + k to each word."""
    gh, gw = grid
    if not attentions:
        raise ValueError("attentions: need at least one layer's weights")
    if not words or any(not 0 <= w < text_len for w in words):
        raise ValueError(f"words must be text positions in [0, {text_len}), got {list(words)}")
    queries = torch.arange(text_len - 1, text_len - 1 + gh * gw)  # (gh * gw,)
    maps = []
    for layer in attentions:
        w = layer[0] if layer.dim() == 4 else layer  # (H, T, T)
        if w.size(-2) < text_len - 1 + gh * gw:
            raise ValueError(f"attention over {w.size(-2)} positions cannot hold {text_len} "
                             f"text positions and {gh}x{gw} image codes")
        rows = w[:, queries][:, :, list(words)].float().mean(0)  # (gh * gw, n_words)
        maps.append(rows.T.reshape(len(words), gh, gw))  # (n_words, gh, gw)
    return torch.stack(maps)  # (L, n_words, gh, gw)


def picture(image: Tensor) -> np.ndarray:
    """uint8 (C, H, W) -> (H, W, 3) float in [0, 1] for imshow (grey repeated)."""
    x = image.float().div(255).clamp(0, 1)
    if x.size(0) == 1:
        x = x.expand(3, -1, -1)
    return x.permute(1, 2, 0).numpy()


def save_image(image: Tensor, path: str | Path, scale: int = 4) -> Path:
    """uint8 (C, H, W) -> a PNG enlarged `scale` times (nearest), written atomically."""
    from PIL import Image

    pixels = (picture(image) * 255).round().astype(np.uint8)  # (H, W, 3)
    shown = Image.fromarray(pixels).resize((pixels.shape[1] * scale, pixels.shape[0] * scale),
                                           Image.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda t: shown.save(t, format="PNG"))


def plot_word_regions(image: Tensor, weights: Tensor, words: Sequence[str],
                      path: str | Path, *, caption: str = "",
                      layer_names: Sequence[str] | None = None) -> Path:
    """The figure: per row (a layer, then their mean) the image, then one overlay per word.
    image: uint8 (C, H, W); weights: (L, n_words, gh, gw) from `word_region_attention`."""
    L, n_words = weights.shape[:2]
    if n_words != len(words):
        raise ValueError(f"weights hold {n_words} words, got {len(words)} names")
    rows = torch.cat([weights, weights.mean(0, keepdim=True)]) if L > 1 else weights
    names = list(layer_names or [f"layer {i + 1}" for i in range(L)])
    names += ["mean"] if L > 1 else []
    H, W = image.shape[-2:]
    heat = F.interpolate(rows.float(), size=(H, W), mode="nearest")  # (R, n_words, H, W)
    shown = picture(image)
    fig, axes = plt.subplots(len(rows), n_words + 1, squeeze=False,
                             figsize=(1.6 * (n_words + 1), 1.7 * len(rows) + 0.4))
    for r, name in enumerate(names):
        top = float(heat[r].max()) or 1.0
        axes[r, 0].imshow(shown, interpolation="nearest")
        axes[r, 0].set_ylabel(name, fontsize=8)
        for c, word in enumerate(words):
            ax = axes[r, c + 1]
            ax.imshow(shown, interpolation="nearest")
            ax.imshow(heat[r, c].numpy(), cmap=COLORMAP, alpha=ALPHA, vmin=0, vmax=top,
                      interpolation="nearest")
            share = float(rows[r, c].mean())
            ax.set_title(f"{word}\n{share:.2f}", fontsize=7)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_title("generated", fontsize=7)
    fig.suptitle(f"{caption}\nattention of each image region to each caption token "
                 "(mean over heads; number: mean weight)" if caption else
                 "attention of each image region to each caption token", fontsize=8)
    return save_png(fig, path)


__all__ = ["picture", "plot_word_regions", "save_image", "word_region_attention"]
