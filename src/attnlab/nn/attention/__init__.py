"""The ATTENTION registry: every mechanism is one file, registered by name.

    from attnlab.nn.attention import ATTENTION
    attn = ATTENTION.build("multi_head", d_model=512, n_heads=8)
    out, weights, cache = attn(x, need_weights=True)

Efficient variants (sliding_window, sparse, longformer, bigbird, linformer, performer, linear,
nystrom, reformer, routing, synthesizer) build with defaults for every knob and declare what
they support (`supports_causal`, `supports_mask`, `supports_cross`, `supports_cache`) and their
cost (`complexity`); `attnlab list` prints both.
"""

from attnlab.nn.attention import (  # noqa: F401  (importing a module registers its mechanism)
    additive,
    bigbird,
    linear,
    linformer,
    longformer,
    multi_head,
    multiplicative,
    nystrom,
    performer,
    reformer,
    routing,
    sliding_window,
    sparse,
    synthesizer,
)
from attnlab.nn.attention.additive import AdditiveAttention
from attnlab.nn.attention.base import ATTENTION, Attention, AttentionOutput
from attnlab.nn.attention.kernels import KERNELS
from attnlab.nn.attention.multi_head import MultiHeadAttention
from attnlab.nn.attention.multiplicative import MultiplicativeAttention

__all__ = [
    "ATTENTION",
    "KERNELS",
    "AdditiveAttention",
    "Attention",
    "AttentionOutput",
    "MultiHeadAttention",
    "MultiplicativeAttention",
]
