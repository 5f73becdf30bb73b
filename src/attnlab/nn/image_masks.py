"""DALL-E's attention masks over [text ; image grid] (Ramesh et al. 2021, "Zero-Shot Text-to-Image
Generation", sec. 2.2, appendix B.1 and fig. 11), as boolean tables: True = may attend.

The sequence is `text_len` text tokens then a `grid x grid` image in row-major order, L =
text_len + grid**2 positions. Every layout is causal (no position sees a later one), text tokens
attend causally among themselves and every image token sees every text token. Among image tokens
(token p at row r = p // grid, column c = p % grid of the image):

- "dense":  every earlier image token (the plain causal mask);
- "row":    the `grid` image tokens before it and itself: its row up to it and the previous row
            from the token right above it on (a band of grid + 1 in raster order, the local part
            of Child et al.'s "strided" pattern with stride = grid, as in the paper's fig. 11a);
- "column": the earlier tokens of its column (the strided part: a distance that is a multiple
            of grid);
- "conv":   the tokens of the k x k neighbourhood centred on it (rows r - k//2 .. r, columns
            c - k//2 .. c + k//2) that come before it in raster order.

`layer_layouts("dalle", n)` is the paper's schedule: column attention in layers i (1-based) with
(i - 2) mod 4 == 0, row attention elsewhere, convolutional attention in the last layer.

Why tables and not a registered ATTENTION variant: `nn/attention/sparse.py` computes Child et
al.'s patterns by blocks, to save time and memory on long single sequences; it has no prefix that
every position sees, no KV cache (`supports_cache = False`) and one pattern per module. DALL-E
needs a text prefix every image token sees, another pattern in each layer of one model, and
incremental decoding with a cache. At this library's image sizes (L of about 100 positions) the
dense (T, S) score matrix costs less than a block-sparse kernel's bookkeeping, so the variant
reused is the existing multi-head attention (SDPA kernel, KV cache, attention weights for `viz`)
with these tables as its boolean mask: the same attention, the paper's connectivity.
"""

from __future__ import annotations

import torch
from torch import Tensor

from attnlab.errors import ConfigError

LAYOUTS = ("dense", "row", "column", "conv")  # one mask each
MODEL_LAYOUTS = (*LAYOUTS, "dalle")  # "dalle": row / column by layer, conv last


def check_layout(layout: str, allowed: tuple[str, ...] = MODEL_LAYOUTS) -> None:
    if layout not in allowed:
        raise ConfigError(f"attention_layout must be one of {list(allowed)}, got {layout!r}")


def layer_layouts(layout: str, n_layers: int) -> tuple[str, ...]:
    """The mask of each layer: `layout` in every layer, or for "dalle" the paper's schedule
    (0-based layer i: column when i % 4 == 1, else row; the last layer conv)."""
    check_layout(layout)
    if layout != "dalle":
        return (layout,) * n_layers
    kinds = ["column" if i % 4 == 1 else "row" for i in range(n_layers)]
    kinds[-1] = "conv"
    return tuple(kinds)


def image_attention_mask(layout: str, text_len: int, grid: int, *,
                         conv_kernel: int = 3) -> Tensor:
    """(L, L) bool, L = text_len + grid**2: row = query position, column = key position."""
    check_layout(layout, LAYOUTS)
    for name, value in (("text_len", text_len), ("grid", grid), ("conv_kernel", conv_kernel)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    if conv_kernel % 2 == 0:
        raise ConfigError(f"conv_kernel must be odd (a neighbourhood centred on the token), "
                          f"got {conv_kernel}")
    L = text_len + grid * grid
    position = torch.arange(L)
    mask = position[:, None] >= position[None, :]  # (L, L) causal
    p = (position - text_len).clamp(min=0)  # (L,) raster index inside the image
    row, column = p // grid, p % grid
    if layout == "row":
        image = p[:, None] - p[None, :] <= grid  # (L, L) with causality: 0 <= p - p' <= grid
    elif layout == "column":
        image = column[:, None] == column[None, :]
    elif layout == "conv":
        h = conv_kernel // 2
        image = ((row[:, None] - row[None, :] <= h)
                 & ((column[:, None] - column[None, :]).abs() <= h))
    else:
        return mask
    is_image = position >= text_len  # (L,)
    both_image = is_image[:, None] & is_image[None, :]  # (L, L)
    return mask & (image | ~both_image)


__all__ = ["LAYOUTS", "MODEL_LAYOUTS", "check_layout", "image_attention_mask", "layer_layouts"]
