"""torch.compile applied per Transformer block, in place (`Module.compile()`): parameter names do
not change, and the blocks of a stack share one compiled graph (same code, same shapes), so
compiling a 30-layer model costs about what one layer does. Inductor fuses each block's small
elementwise ops (norms, rotary angles, residual adds, casts around quantized matmuls) into a
few C++ kernels; on a CPU, where a decoding step of a small model is a few hundred tiny ops,
that per-op overhead is most of what it removes.

Training compiles with the default shape policy (`training/parallelize.py`); decoding passes
`dynamic=True`, because the attended length grows every step and a recompile per length would
cost more than it saves.
"""

from __future__ import annotations

from torch import nn

from attnlab.nn.block import DecoderLayer, EncoderLayer


def transformer_blocks(model: nn.Module) -> list[nn.Module]:
    """The model's repeated blocks (encoder and decoder layers), outermost first; empty for a
    model built of other parts (RNN, ConvS2S)."""
    return [m for m in model.modules() if isinstance(m, EncoderLayer | DecoderLayer)]


def compile_blocks(model: nn.Module, dynamic: bool | None = None) -> nn.Module:
    """Compile each Transformer block of `model` in place (the whole model when it has none);
    returns the model. The first call of each shape pays the compile (~10-20 s on 2 cores)."""
    for part in transformer_blocks(model) or [model]:
        part.compile(dynamic=dynamic)
    return model
