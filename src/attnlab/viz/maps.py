"""The attention of one model on one input, as every picture and the HTML viewer consume it.

An `AttentionMaps` holds one `AttentionView` per kind of attention the model has: a decoder-only
or encoder-only model has one self-attention view; an encoder-decoder has encoder
self-attention, decoder self-attention and cross-attention. Each view is a stack of weights
(L layers, H heads, T queries, S keys) with the tokens on both axes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

KINDS = ("self", "cross")


@dataclass(frozen=True)
class AttentionView:
    """Weights (L, H, T, S) of one attention kind; rows sum to 1 (0 for a masked query)."""

    name: str  # shown to people: "encoder self-attention", "cross-attention", ...
    kind: str  # "self" or "cross"
    query_tokens: tuple[str, ...]
    key_tokens: tuple[str, ...]
    weights: Tensor  # (L, H, T, S) float32 on CPU

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

    @property
    def n_layers(self) -> int:
        return self.weights.size(0)

    @property
    def n_heads(self) -> int:
        return self.weights.size(1)

    def to_json(self, decimals: int = 4) -> dict[str, Any]:
        """Plain lists, weights rounded, for the HTML viewer and results files."""
        weights = torch.round(self.weights.float(), decimals=decimals)
        return {
            "name": self.name,
            "kind": self.kind,
            "query_tokens": list(self.query_tokens),
            "key_tokens": list(self.key_tokens),
            "weights": weights.tolist(),  # [L][H][T][S]
        }


@dataclass(frozen=True)
class AttentionMaps:
    """Every attention view of one model on one input."""

    model: str  # the folder or preset it came from
    family: str  # model_type: "transformer", "gpt2", "bert", "llama", "t5", "rnn", ...
    views: tuple[AttentionView, ...]

    def __post_init__(self) -> None:
        if not self.views:
            raise ValueError(f"{self.model}: no attention views (does the model attend?)")

    def view(self, name: str) -> AttentionView:
        for view in self.views:
            if view.name == name:
                return view
        raise KeyError(f"no view {name!r}; expected one of: {[v.name for v in self.views]}")

    def to_json(self, decimals: int = 4) -> dict[str, Any]:
        return {
            "model": self.model,
            "family": self.family,
            "views": [view.to_json(decimals) for view in self.views],
        }
