"""Key/value caches for incremental (autoregressive) decoding.

A cache is an explicit object: passed into an attention forward and returned by it, never
hidden on a module. Self-attention caches grow by the new keys/values each step; a
cross-attention cache is filled once from the encoder output and then reused, so the
encoder-side projections run once per sentence instead of once per generated token.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


class KVCache:
    """Keys and values of one attention layer, each (B, Hkv, S, Dh).

    `cross=True` marks a cross-attention cache: once filled, `update` is not called again and
    the attention module reuses `key`/`value` as they are.
    """

    def __init__(self, *, cross: bool = False) -> None:
        self.cross = cross
        self.key: Tensor | None = None
        self.value: Tensor | None = None

    @property
    def length(self) -> int:
        """Number of cached key positions S (0 when empty)."""
        return 0 if self.key is None else self.key.size(2)

    @property
    def is_filled(self) -> bool:
        return self.key is not None

    def update(self, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor]:
        """Append new keys/values (B, Hkv, T_new, Dh) and return all of them (B, Hkv, S, Dh)."""
        if self.key is None or self.value is None:
            self.key, self.value = key, value
        else:
            if key.shape[:2] != self.key.shape[:2] or key.size(-1) != self.key.size(-1):
                raise ValueError(
                    f"new keys {tuple(key.shape)} do not match the cache {tuple(self.key.shape)} "
                    "on (batch, heads, head_dim)"
                )
            self.key = torch.cat([self.key, key], dim=2)  # (B, Hkv, S + T_new, Dh)
            self.value = torch.cat([self.value, value], dim=2)  # (B, Hkv, S + T_new, Dh)
        return self.key, self.value

    def reorder(self, index: Tensor) -> None:
        """Select batch rows (beam search: keep the surviving hypotheses' histories)."""
        if self.key is not None and self.value is not None:
            self.key = self.key.index_select(0, index)
            self.value = self.value.index_select(0, index)

    def __repr__(self) -> str:
        shape = None if self.key is None else tuple(self.key.shape)
        return f"KVCache(cross={self.cross}, shape={shape})"


@dataclass
class DecoderLayerCache:
    """The caches of one decoder layer: masked self-attention and (optional) cross-attention."""

    self_attn: KVCache = field(default_factory=KVCache)
    cross_attn: KVCache = field(default_factory=lambda: KVCache(cross=True))


@dataclass
class DecoderCache:
    """All layers' caches for one decoding run."""

    layers: list[DecoderLayerCache]

    @classmethod
    def empty(cls, n_layers: int) -> DecoderCache:
        return cls([DecoderLayerCache() for _ in range(n_layers)])

    @property
    def length(self) -> int:
        """Number of target positions already decoded."""
        return self.layers[0].self_attn.length if self.layers else 0

    def reorder(self, index: Tensor) -> None:
        for layer in self.layers:
            layer.self_attn.reorder(index)
            layer.cross_attn.reorder(index)
