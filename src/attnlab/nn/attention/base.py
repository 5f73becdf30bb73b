"""The attention forward contract shared by every mechanism in the ATTENTION registry.

    forward(x, context=None, *, mask=None, causal=False, cache=None, need_weights=False,
            bias=None, position_ids=None) -> AttentionOutput(output, weights, cache)

x: queries (B, T, D). context: keys/values source (B, S, D); None = self-attention.
mask: bool, True = may attend, broadcastable to (B, H, T, S). causal: lower-right aligned.
cache: a KVCache (self-attention grows it; cross-attention fills it once and reuses it).
need_weights: also return the attention weights (B, H, T, S), rows summing to 1.
bias: additive score bias broadcastable to (B, H, T, S) (ALiBi, T5 relative positions).
position_ids: (T,) or (B, T) absolute positions for rotary embeddings (default: after the cache).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, NamedTuple

from torch import Tensor, nn

from attnlab.nn.cache import KVCache
from attnlab.registry import Registry

ATTENTION: Registry = Registry("attention")


class AttentionOutput(NamedTuple):
    output: Tensor  # (B, T, D)
    weights: Tensor | None  # (B, H, T, S) when need_weights, else None
    cache: KVCache | None  # the cache passed in, updated


class Attention(nn.Module):
    """Base class: stores the common sizes and declares what a mechanism supports.

    Subclasses set the capability flags; an unsupported combination raises instead of
    silently attending where it should not (e.g. to the future).
    """

    supports_causal: ClassVar[bool] = True
    supports_mask: ClassVar[bool] = True
    supports_cache: ClassVar[bool] = True
    supports_cross: ClassVar[bool] = True
    supports_bias: ClassVar[bool] = True
    supports_full_mask: ClassVar[bool] = True  # False: key-padding masks (B, 1, 1, S) only
    weights_over_keys: ClassVar[bool] = True  # False: need_weights is over the mechanism's slots

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        check_positive("d_model", d_model)
        check_positive("n_heads", n_heads)
        self.d_model = d_model
        self.n_heads = n_heads

    def check_call(
        self,
        x: Tensor,
        context: Tensor | None,
        mask: Tensor | None,
        causal: bool,
        cache: KVCache | None,
        bias: Tensor | None,
    ) -> None:
        """Validate the inputs common to every mechanism (cheap: shapes and flags only)."""
        name = type(self).__name__
        if x.dim() != 3 or x.size(-1) != self.d_model:
            raise ValueError(
                f"{name}: x must be (batch, length, d_model={self.d_model}), got {tuple(x.shape)}"
            )
        if context is not None and (context.dim() != 3 or context.size(0) != x.size(0)):
            raise ValueError(
                f"{name}: context must be (batch={x.size(0)}, length, dim), "
                f"got {tuple(context.shape)}"
            )
        if causal and not self.supports_causal:
            raise ValueError(f"{name} does not support causal masking")
        if mask is not None and not self.supports_mask:
            raise ValueError(f"{name} does not support attention masks")
        if cache is not None and not self.supports_cache:
            raise ValueError(f"{name} does not support a KV cache")
        if context is not None and not self.supports_cross:
            raise ValueError(f"{name} does not support cross-attention")
        if bias is not None and not self.supports_bias:
            raise ValueError(f"{name} does not support an additive position bias")


    def keys_and_values(
        self,
        x: Tensor,
        context: Tensor | None,
        cache: KVCache | None,
        width: int,
        project: Callable[[Tensor], tuple[Tensor, Tensor]],
    ) -> tuple[Tensor, Tensor]:
        """Keys and values (B, Hkv, S, Dk) from the cache, the context or x itself.

        A filled cross-attention cache is reused as it is (the encoder side is projected once);
        otherwise the source (context, or x in self-attention) must be `width` wide and
        `project(source)` makes its keys and values, which a cache then extends.
        """
        is_cross = context is not None or (cache is not None and cache.cross)
        if is_cross and cache is not None and cache.is_filled:
            return cache.key, cache.value
        source = x if context is None else context
        if is_cross and context is None:
            raise ValueError("cross-attention with an empty cache needs `context`")
        if source.size(-1) != width:
            raise ValueError(f"context width must be {width}, got {source.size(-1)}")
        keys, values = project(source)
        if cache is not None:
            keys, values = cache.update(keys, values)
        return keys, values


def check_positive(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
