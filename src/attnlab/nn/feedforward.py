"""Position-wise feed-forward networks.

"relu" / "gelu" / "gelu_tanh" / "silu" / "quick_gelu": FFN(x) = act(x W_1 + b_1) W_2 + b_2
(Vaswani et al., 2017, sec. 3.3); SiLU as in Marian's OPUS-MT models; quick GELU,
x * sigmoid(1.702 x), as in CLIP (Radford et al., 2021; Hendrycks & Gimpel's sigmoid
approximation of GELU).
"swiglu" / "geglu": gated linear units, (act(x W) * x V) W_2 (Shazeer, 2020, "GLU Variants
Improve Transformer"), as in LLaMA (SiLU) and T5 v1.1 (GELU).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.registry import Registry

FEEDFORWARD: Registry = Registry("feed-forward")

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "silu": F.silu,
    "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
}


class FeedForward(nn.Module):
    """Two linear maps with an activation between them: D -> d_ff -> D."""

    def __init__(
        self, d_model: int, d_ff: int, *, activation: str = "relu", dropout: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.activation = activation
        self.act = ACTIVATIONS[activation]
        self.up_proj = nn.Linear(d_model, d_ff, bias=bias)
        self.down_proj = nn.Linear(d_ff, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        h = self.act(self.up_proj(x))  # (B, T, d_ff)
        return self.down_proj(self.dropout(h))  # (B, T, D)


class GatedFeedForward(nn.Module):
    """Gated linear unit: (act(x W_gate) * x W_up) W_down."""

    def __init__(
        self, d_model: int, d_ff: int, *, activation: str = "silu", dropout: float = 0.0,
        bias: bool = False,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.activation = activation
        self.act = ACTIVATIONS[activation]
        self.gate_proj = nn.Linear(d_model, d_ff, bias=bias)
        self.up_proj = nn.Linear(d_model, d_ff, bias=bias)
        self.down_proj = nn.Linear(d_ff, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        h = self.act(self.gate_proj(x)) * self.up_proj(x)  # (B, T, d_ff)
        return self.down_proj(self.dropout(h))  # (B, T, D)


@FEEDFORWARD.register("relu")
def relu_ffn(d_model: int, d_ff: int, *, dropout: float = 0.0, bias: bool = True) -> FeedForward:
    return FeedForward(d_model, d_ff, activation="relu", dropout=dropout, bias=bias)


@FEEDFORWARD.register("gelu")
def gelu_ffn(d_model: int, d_ff: int, *, dropout: float = 0.0, bias: bool = True) -> FeedForward:
    return FeedForward(d_model, d_ff, activation="gelu", dropout=dropout, bias=bias)


@FEEDFORWARD.register("gelu_tanh")
def gelu_tanh_ffn(
    d_model: int, d_ff: int, *, dropout: float = 0.0, bias: bool = True
) -> FeedForward:
    """GELU with the tanh approximation, as GPT-2 (HF "gelu_new") and BERT's TF port use."""
    return FeedForward(d_model, d_ff, activation="gelu_tanh", dropout=dropout, bias=bias)


@FEEDFORWARD.register("silu")
def silu_ffn(d_model: int, d_ff: int, *, dropout: float = 0.0, bias: bool = True) -> FeedForward:
    """SiLU / swish (Ramachandran et al., 2017), as Marian's OPUS-MT models use (HF "swish")."""
    return FeedForward(d_model, d_ff, activation="silu", dropout=dropout, bias=bias)


@FEEDFORWARD.register("quick_gelu")
def quick_gelu_ffn(
    d_model: int, d_ff: int, *, dropout: float = 0.0, bias: bool = True
) -> FeedForward:
    """x * sigmoid(1.702 x), CLIP's activation (HF "quick_gelu")."""
    return FeedForward(d_model, d_ff, activation="quick_gelu", dropout=dropout, bias=bias)


@FEEDFORWARD.register("swiglu")
def swiglu_ffn(
    d_model: int, d_ff: int, *, dropout: float = 0.0, bias: bool = False
) -> GatedFeedForward:
    return GatedFeedForward(d_model, d_ff, activation="silu", dropout=dropout, bias=bias)


@FEEDFORWARD.register("geglu")
def geglu_ffn(
    d_model: int, d_ff: int, *, dropout: float = 0.0, bias: bool = False
) -> GatedFeedForward:
    return GatedFeedForward(d_model, d_ff, activation="gelu", dropout=dropout, bias=bias)
