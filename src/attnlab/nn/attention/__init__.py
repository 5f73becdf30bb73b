"""The ATTENTION registry: every mechanism is one file, registered by name.

    from attnlab.nn.attention import ATTENTION
    attn = ATTENTION.build("multi_head", d_model=512, n_heads=8)
    out, weights, cache = attn(x, need_weights=True)
"""

from attnlab.nn.attention import additive, multi_head, multiplicative  # noqa: F401  (register)
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
