"""torch.compile applied from outside the model, in place (`Module.compile()`: parameter names do
not change), at one of two scopes:

- "blocks": each Transformer block is compiled on its own. The blocks of a stack share one
  compiled graph (same code, same shapes), so a 30-layer model compiles in about the time of
  one layer (~10-20 s on 2 cores). Each block call still pays a guard check and a Python call.
- "stack": each encoder / decoder stack is one graph, so a decoding step is one call. Every
  layer is compiled separately inside it (~3 minutes for 30 layers on 2 cores); it pays off for
  long-running decoding, where it removes the per-block overhead left above (measured: 135M
  LLaMA with 4-bit weights, 69 -> 91 tokens/s).

Inductor fuses a block's small elementwise ops (norms, rotary angles, residual adds, casts around
quantized matmuls) into a few C++ kernels; on a CPU, where a decoding step of a small model is
a few hundred tiny ops, that per-op overhead is most of what it removes. Training compiles
blocks with the default shape policy (`training/parallelize.py`); decoding passes
`dynamic=True`, because the attended length grows every step and a recompile per length would
cost more than it saves.
"""

from __future__ import annotations

from torch import nn

from attnlab.nn.block import DecoderLayer, EncoderLayer
from attnlab.nn.stack import Decoder, Encoder

SCOPES = ("blocks", "stack")


def transformer_blocks(model: nn.Module) -> list[nn.Module]:
    """The model's repeated blocks (encoder and decoder layers), outermost first; empty for a
    model built of other parts (RNN, ConvS2S)."""
    return [m for m in model.modules() if isinstance(m, EncoderLayer | DecoderLayer)]


def compile_blocks(model: nn.Module, dynamic: bool | None = None,
                   scope: str = "blocks") -> nn.Module:
    """Compile each Transformer block ("blocks") or each encoder / decoder stack ("stack") of
    `model` in place, the whole model when it has none; returns the model. The first call of
    each shape pays the compile."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    parts = (transformer_blocks(model) if scope == "blocks"
             else [m for m in model.modules() if isinstance(m, Encoder | Decoder)])
    for part in parts or [model]:
        part.compile(dynamic=dynamic)
    return model
