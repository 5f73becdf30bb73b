"""The attention of one model on one input, as every picture and the HTML viewer consume it.

An `AttentionMaps` holds one `AttentionView` per kind of attention the model has: a decoder-only
or encoder-only model has one self-attention view; an encoder-decoder has encoder
self-attention, decoder self-attention and cross-attention. Each view is a stack of weights
(L layers, H heads, T queries, S keys) with the tokens on both axes.

Maps of a Vision Transformer or Audio Spectrogram Transformer also carry a `PatchGrid`: where
each patch token sits on the picture (image or spectrogram) the patches were cut from, and the
picture itself as PNG, so the viewer draws attention over patches instead of token lists.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

KINDS = ("self", "cross")
PICTURES = ("image", "audio")


@dataclass(frozen=True)
class AttentionView:
    """Weights (L, H, T, S) of one attention kind; rows sum to 1 (0 for a masked query)."""

    name: str  # shown to people: "encoder self-attention", "cross-attention", ...
    kind: str  # "self" or "cross"
    query_tokens: tuple[str, ...]
    key_tokens: tuple[str, ...]
    weights: Tensor  # (L, H, T, S) float32 on CPU
    # 1-based numbers of the layers and heads held, when they are a selection (empty: all,
    # 1 .. L and 1 .. H); the viewer labels its choices with them
    layer_numbers: tuple[int, ...] = ()
    head_numbers: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.weights.dim() != 4:
            raise ValueError(
                f"{self.name}: weights must be (layers, heads, queries, keys), "
                f"got shape {tuple(self.weights.shape)}"
            )
        T, S = self.weights.shape[2:]
        if len(self.query_tokens) != T or len(self.key_tokens) != S:
            raise ValueError(
                f"{self.name}: {len(self.query_tokens)} query and {len(self.key_tokens)} key "
                f"tokens for weights with T={T}, S={S}"
            )
        for numbers, count, what in ((self.layer_numbers, self.n_layers, "layer"),
                                     (self.head_numbers, self.n_heads, "head")):
            if numbers and (len(numbers) != count or min(numbers) < 1):
                raise ValueError(f"{self.name}: {what}_numbers must be {count} numbers >= 1, "
                                 f"got {list(numbers)}")

    @property
    def n_layers(self) -> int:
        return self.weights.size(0)

    @property
    def n_heads(self) -> int:
        return self.weights.size(1)

    def to_json(self, decimals: int = 4) -> dict[str, Any]:
        """Plain lists, weights rounded, for the HTML viewer and results files."""
        weights = torch.round(self.weights.float(), decimals=decimals)
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "query_tokens": list(self.query_tokens),
            "key_tokens": list(self.key_tokens),
            "weights": weights.tolist(),  # [L][H][T][S]
        }
        if self.layer_numbers:
            out["layers"] = list(self.layer_numbers)
        if self.head_numbers:
            out["heads"] = list(self.head_numbers)
        return out


@dataclass(frozen=True)
class PatchGrid:
    """Where the patch tokens of a ViT / DeiT / AST input sit on its picture.

    Token `len(prefix) + i * grid[1] + j` is patch (i, j): it covers picture rows
    [i * stride[0], i * stride[0] + patch[0]) and columns [j * stride[1], j * stride[1] +
    patch[1]) of a picture of `size` (rows, cols), counted in the model's own order. A
    spectrogram's rows are mel bins from the lowest; it is drawn frequency up (`flip_rows`):
    model row r is drawn as row size[0] - 1 - r. `png` is the picture as drawn.
    """

    kind: str  # "image" or "audio"
    grid: tuple[int, int]  # patches along rows and columns: (gh, gw) or (frequency, time)
    patch: tuple[int, int]  # window of one patch, in picture pixels (rows, cols)
    stride: tuple[int, int]  # step between patches (rows, cols); < patch: they overlap (AST)
    size: tuple[int, int]  # the picture's (rows, cols)
    prefix: tuple[str, ...]  # tokens before the patches: ("[CLS]",) or ("[CLS]", "[DIST]")
    flip_rows: bool  # True: row 0 drawn at the bottom (a spectrogram, frequency up)
    png: bytes = field(repr=False)  # the picture as drawn, a PNG file's bytes

    def __post_init__(self) -> None:
        if self.kind not in PICTURES:
            raise ValueError(f"kind must be one of {PICTURES}, got {self.kind!r}")
        for axis in (0, 1):
            reach = (self.grid[axis] - 1) * self.stride[axis] + self.patch[axis]
            if min(self.grid[axis], self.patch[axis], self.stride[axis]) < 1 \
                    or reach > self.size[axis]:
                raise ValueError(f"{self.grid} patches of {self.patch} at stride {self.stride} "
                                 f"do not fit a picture of {self.size}")
        if not self.png.startswith(b"\x89PNG"):
            raise ValueError("png must hold a PNG file's bytes")

    @property
    def n_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "grid": list(self.grid), "patch": list(self.patch),
            "stride": list(self.stride), "size": list(self.size), "prefix": list(self.prefix),
            "flip_rows": self.flip_rows, "png": base64.b64encode(self.png).decode("ascii"),
        }


@dataclass(frozen=True)
class AttentionMaps:
    """Every attention view of one model on one input."""

    model: str  # the folder or preset it came from
    family: str  # model_type: "transformer", "gpt2", "bert", "llama", "t5", "rnn", ...
    views: tuple[AttentionView, ...]
    patches: PatchGrid | None = None  # ViT / DeiT / AST: the tokens after the prefix are patches

    def __post_init__(self) -> None:
        if not self.views:
            raise ValueError(f"{self.model}: no attention views (does the model attend?)")
        if self.patches is not None:
            tokens = len(self.patches.prefix) + self.patches.n_patches
            for view in self.views:
                if view.kind != "self" or len(view.key_tokens) != tokens:
                    raise ValueError(f"{view.name}: patch maps need self-attention over "
                                     f"{tokens} tokens, got {len(view.key_tokens)} keys")

    def view(self, name: str) -> AttentionView:
        for view in self.views:
            if view.name == name:
                return view
        raise KeyError(f"no view {name!r}; expected one of: {[v.name for v in self.views]}")

    def to_json(self, decimals: int = 4) -> dict[str, Any]:
        out = {
            "model": self.model,
            "family": self.family,
            "views": [view.to_json(decimals) for view in self.views],
        }
        if self.patches is not None:
            out["patches"] = self.patches.to_json()
        return out
