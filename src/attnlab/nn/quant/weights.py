"""One choice of the weights a model decodes with (`--weights` of `attnlab generate` and
`attnlab translate`)."""

from __future__ import annotations

import torch
from torch import nn

from attnlab.nn.quant.common import dequantize_linears
from attnlab.nn.quant.int4 import Int4Linear, quantize_int4
from attnlab.nn.quant.int8 import Int8Linear, quantize_int8

WEIGHT_FORMATS = ("fp32", "bf16", "int8", "int4")
QUANTIZED = {"int8": Int8Linear, "int4": Int4Linear}


def stored_format(model: nn.Module) -> str:
    """The weights `model` holds now: int4 or int8 when it has such layers (a GGUF file's 4-bit
    blocks load as Int4Linear), else fp32 or bf16 from its first floating parameter."""
    for name, layer in QUANTIZED.items():
        if any(isinstance(m, layer) for m in model.modules()):
            return name
    floating = [p for p in model.parameters() if p.is_floating_point()]
    return "bf16" if floating and floating[0].dtype == torch.bfloat16 else "fp32"


def with_weights(model: nn.Module, weights: str | None) -> nn.Module:
    """`model` (in place) with its weights in `weights` for inference: None as stored; fp32
    every weight in float32 (quantized layers dequantized); bf16 every floating tensor in
    bfloat16 (half the bytes; activations follow); int8 the linear layers' weights per output
    channel (`quantize_int8`, a quarter of the bytes); int4 in groups of 32 (`quantize_int4`, an
    eighth plus a scale and zero per group; CPU only). Quantized weights keep float
    activations. A model already in the format asked for is returned as it is."""
    if weights is not None and weights not in WEIGHT_FORMATS:
        raise ValueError(f"weights must be one of {WEIGHT_FORMATS}, got {weights!r}")
    if weights is None or weights == stored_format(model):
        return model
    dequantize_linears(model)
    if weights == "bf16":
        return model.to(torch.bfloat16)
    model = model.float()
    if weights == "int8":
        return quantize_int8(model)
    if weights == "int4":
        return quantize_int4(model)
    return model
