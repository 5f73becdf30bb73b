"""Attention rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers").

Raw attention of a deep layer mixes positions that earlier layers already mixed, and the
residual connection carries each token past every layer. Rollout accounts for both: per layer
the head-averaged attention is blended with the identity (0.5 A + 0.5 I for the residual),
rows are renormalised, and the layers are multiplied from the first up, so row i of the product
says how much of each input token reaches position i after that many layers.
"""

from __future__ import annotations

import torch
from torch import Tensor

from attnlab.viz.maps import AttentionView


def attention_rollout(weights: Tensor, residual: float = 0.5) -> Tensor:
    """Rollout after every layer of self-attention weights (L, H, T, T) -> (L, T, T); entry l
    is the product A'_l ... A'_1 with A' = rownorm((1 - residual) mean_h(A) + residual I)."""
    if weights.dim() != 4 or weights.size(-1) != weights.size(-2):
        raise ValueError("weights must be self-attention (layers, heads, T, T), "
                         f"got shape {tuple(weights.shape)}")
    if not 0.0 <= residual <= 1.0:
        raise ValueError(f"residual must be in [0, 1], got {residual}")
    weights = weights.double()
    T = weights.size(-1)
    eye = torch.eye(T, dtype=weights.dtype)  # (T, T)
    mixed = (1 - residual) * weights.mean(1) + residual * eye  # (L, T, T)
    # A fully masked query (a zero row) keeps only its own position instead of dividing by 0.
    sums = mixed.sum(-1, keepdim=True)  # (L, T, 1)
    mixed = torch.where(sums > 0, mixed / sums.clamp_min(1e-30), eye)
    rolled = []
    current = eye
    for layer in mixed:
        current = layer @ current  # (T, T): layer l reads what layers < l already mixed
        rolled.append(current)
    return torch.stack(rolled).float()  # (L, T, T)


def rollout_view(view: AttentionView, residual: float = 0.5) -> AttentionView:
    """A one-head view whose layer l is the rollout through layer l of a self-attention view."""
    if view.kind != "self":
        raise ValueError(f"rollout needs self-attention; {view.name!r} is {view.kind}-attention")
    rolled = attention_rollout(view.weights, residual)[:, None]  # (L, 1, T, T)
    return AttentionView(f"{view.name} rollout", "self", view.query_tokens, view.key_tokens,
                         rolled)
