"""The ATTENTION registry: every mechanism is one file, registered by name.

    from attnlab.nn.attention import ATTENTION
    attn = ATTENTION.build("multi_head", d_model=512, n_heads=8)
    out, weights, cache = attn(x, need_weights=True)
"""

import importlib

from attnlab.nn.attention import additive, multi_head, multiplicative  # noqa: F401  (register)
from attnlab.nn.attention.additive import AdditiveAttention
from attnlab.nn.attention.base import ATTENTION, Attention, AttentionOutput
from attnlab.nn.attention.kernels import KERNELS
from attnlab.nn.attention.multi_head import MultiHeadAttention
from attnlab.nn.attention.multiplicative import MultiplicativeAttention

# TEMPORARY while issue 7 is being written: efficient variants register when their file exists.
EFFICIENT_VARIANTS = (
    "sliding_window", "sparse", "longformer", "bigbird", "linformer", "performer", "linear",
    "reformer", "routing", "synthesizer", "nystrom",
)
for _module in EFFICIENT_VARIANTS:
    try:
        importlib.import_module(f"attnlab.nn.attention.{_module}")
    except ModuleNotFoundError as _error:
        if _error.name != f"attnlab.nn.attention.{_module}":
            raise

__all__ = [
    "ATTENTION",
    "KERNELS",
    "AdditiveAttention",
    "Attention",
    "AttentionOutput",
    "MultiHeadAttention",
    "MultiplicativeAttention",
]
