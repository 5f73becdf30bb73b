"""Normalization layers: LayerNorm (Ba et al., 2016) and RMSNorm (Zhang and Sennrich, 2019).

NORM builds one by name ("layer", "rms") so configs hold strings.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attnlab.registry import Registry

NORM: Registry = Registry("norm")


@NORM.register("layer")
class LayerNorm(nn.LayerNorm):
    """LayerNorm with an optional bias (GPT-2 / BERT use it; some modern models drop it)."""

    def __init__(self, d_model: int, *, eps: float = 1e-5, bias: bool = True) -> None:
        super().__init__(d_model, eps=eps, bias=bias)


@NORM.register("rms")
class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight: no mean subtraction, no bias (T5, LLaMA).

    Computed in float32 and cast back, so half-precision inputs keep their accuracy.
    """

    def __init__(self, d_model: int, *, eps: float = 1e-6, bias: bool = False) -> None:
        super().__init__()
        if bias:
            raise ValueError("RMSNorm has no bias; pass bias=False or use norm='layer'")
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x: Tensor) -> Tensor:
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.numel()}, eps={self.eps}"
