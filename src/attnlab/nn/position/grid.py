"""Learned 2-D position tables resized to another patch grid (Dosovitskiy et al. 2021, sec. 3.2,
"Fine-tuning and higher resolution": "we perform 2D interpolation of the pre-trained position
embeddings, according to their location in the original image"; timm's `resample_abs_pos_embed`
names the interpolation mode, bicubic by default).

    table = resize_grid_positions(table, (14, 14), (24, 24), mode="bicubic")  # (1, 576, D)

At the original grid the table comes back unchanged (the same tensor), whatever the mode.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

# The 2-D modes of torch.nn.functional.interpolate; bicubic is timm's and Hugging Face's.
GRID_MODES: tuple[str, ...] = ("bicubic", "bilinear", "nearest", "nearest-exact", "area")


def check_grid_mode(mode: str, name: str = "position_interpolation") -> None:
    """Raise ValueError naming `name` unless `mode` is one of GRID_MODES."""
    if mode not in GRID_MODES:
        raise ValueError(f"{name} must be one of {list(GRID_MODES)}, got {mode!r}")


def resize_grid_positions(table: Tensor, grid: tuple[int, int], new_grid: tuple[int, int],
                          mode: str = "bicubic") -> Tensor:
    """`table` (1, gh * gw, D): one learned vector per patch, row-major over the `grid`
    (gh, gw) -> (1, nh * nw, D) over `new_grid` (nh, nw), interpolated in 2-D by `mode`
    (align_corners=False for the linear modes, as Hugging Face's ViT and timm)."""
    check_grid_mode(mode, "mode")
    gh, gw = grid
    if table.dim() != 3 or table.size(0) != 1 or table.size(1) != gh * gw:
        raise ValueError(f"table must have shape (1, {gh} * {gw}, D) for grid {grid}, "
                         f"got {tuple(table.shape)}")
    if tuple(new_grid) == (gh, gw):
        return table
    nh, nw = new_grid
    if nh < 1 or nw < 1:
        raise ValueError(f"new_grid must be positive, got {tuple(new_grid)}")
    D = table.size(-1)
    image = table.reshape(1, gh, gw, D).permute(0, 3, 1, 2)  # (1, D, gh, gw)
    linear = mode in ("bilinear", "bicubic")
    # float32 for the resize: CPU bicubic has no bfloat16 kernel, and the table is small
    resized = F.interpolate(image.float(), size=(nh, nw), mode=mode,
                            **({"align_corners": False} if linear else {}))  # (1, D, nh, nw)
    return resized.to(table.dtype).permute(0, 2, 3, 1).reshape(1, nh * nw, D)
