"""What every weight-only quantized linear layer shares: the compute dtype its activations are
cast to, and the swap of a model's nn.Linear layers for quantized ones."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

COMPUTE_DTYPES = ("auto", "float32", "bfloat16")


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (oneDNN's check: AMX or AVX512-BF16)."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(torch.backends.mkldnn.is_available() and check is not None and check())


def resolve_compute_dtype(name: str, device: torch.device) -> torch.dtype:
    """"auto" -> bfloat16 where the device computes it natively, else float32."""
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"compute_dtype must be one of {COMPUTE_DTYPES}, got {name!r}")
    if name == "auto":
        fast = native_bf16() if device.type == "cpu" else torch.cuda.is_bf16_supported()
        return torch.bfloat16 if fast else torch.float32
    return getattr(torch, name)


def replace_linears(model: nn.Module, build: Callable[[nn.Linear], nn.Module]) -> nn.Module:
    """Replace every nn.Linear of `model` (in place) by `build(linear)`; returns the model in
    eval mode without gradients (quantized weights are for inference). A tied output layer gets
    its own quantized copy; the embedding table it shared stays float for the lookup."""
    swaps = [(parent, name, child) for parent in model.modules()
             for name, child in parent.named_children() if type(child) is nn.Linear]
    if not swaps:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layer to quantize")
    for parent, name, child in swaps:
        setattr(parent, name, build(child))
    return model.eval().requires_grad_(False)


def float_linear(weight: Tensor, bias: Tensor | None) -> nn.Linear:
    """An nn.Linear holding `weight` (N, K) and `bias` (N,) as they are (float32)."""
    linear = nn.Linear(weight.size(1), weight.size(0), bias=bias is not None,
                       device=weight.device)
    with torch.no_grad():
        linear.weight.copy_(weight)
        if bias is not None:
            linear.bias.copy_(bias)
    return linear


def dequantize_linears(model: nn.Module) -> nn.Module:
    """Replace every quantized linear layer of `model` (in place; any module with a
    `dequantized()` weight and a `bias`) by the float32 nn.Linear its weight stands for; returns
    the model."""
    swaps = [(parent, name, child) for parent in model.modules()
             for name, child in parent.named_children() if hasattr(child, "dequantized")]
    for parent, name, child in swaps:
        setattr(parent, name, float_linear(child.dequantized(), child.bias))
    return model
