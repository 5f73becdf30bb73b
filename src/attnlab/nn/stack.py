"""Encoder and decoder stacks (Vaswani et al., 2017, sec. 3.1): N identical layers.

A "bias"-kind position module (T5 relative buckets, ALiBi) is computed once per forward here
and shared by every layer, instead of once per layer. Layers whose feed-forward is a mixture of
experts report their routing; the stack returns it in `routers` (None when no layer routes).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from attnlab.nn.block import DecoderLayer, EncoderLayer
from attnlab.nn.cache import DecoderCache
from attnlab.nn.moe import RouterOutput


@dataclass
class EncoderOutput:
    last_hidden_state: Tensor  # (B, S, D)
    attentions: tuple[Tensor, ...] | None = None  # per layer (B, H, S, S)
    routers: tuple[RouterOutput, ...] | None = None  # per MoE layer, in order


@dataclass
class DecoderOutput:
    last_hidden_state: Tensor  # (B, T, D)
    attentions: tuple[Tensor, ...] | None = None  # per layer (B, H, T, T_total)
    cross_attentions: tuple[Tensor, ...] | None = None  # per layer (B, H, T, S)
    cache: DecoderCache | None = None
    routers: tuple[RouterOutput, ...] | None = None  # per MoE layer, in order


class Encoder(nn.Module):
    """Stack of EncoderLayers, an optional final norm (pre-norm models) and position bias."""

    def __init__(
        self,
        layers: list[EncoderLayer],
        final_norm: nn.Module | None = None,
        position_bias: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.final_norm = final_norm
        self.position_bias = position_bias

    def forward(
        self,
        x: Tensor,
        *,
        mask: Tensor | None = None,
        causal: bool = False,
        position_ids: Tensor | None = None,
        output_attentions: bool = False,
    ) -> EncoderOutput:
        S = x.size(1)
        bias = None if self.position_bias is None else self.position_bias(S, S, device=x.device)
        attentions, routers = [], []
        for layer in self.layers:
            x, weights, _, router = layer(
                x, mask=mask, causal=causal, bias=bias, position_ids=position_ids,
                need_weights=output_attentions,
            )
            attentions.append(weights)
            if router is not None:
                routers.append(router)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return EncoderOutput(x, tuple(attentions) if output_attentions else None,
                             tuple(routers) or None)


class Decoder(nn.Module):
    """Stack of DecoderLayers (causal self-attention, optional cross-attention, feed-forward)."""

    def __init__(
        self,
        layers: list[DecoderLayer],
        final_norm: nn.Module | None = None,
        position_bias: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.final_norm = final_norm
        self.position_bias = position_bias

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        *,
        mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        cache: DecoderCache | None = None,
        position_ids: Tensor | None = None,
        output_attentions: bool = False,
    ) -> DecoderOutput:
        """x: (B, T, D) new target positions; with a cache, keys cover past + T positions and
        `mask` (if any) must broadcast to (B, H, T, past + T)."""
        if cache is not None and len(cache.layers) != len(self.layers):
            raise ValueError(
                f"cache has {len(cache.layers)} layers, the decoder has {len(self.layers)}"
            )
        T = x.size(1)
        total = T + (0 if cache is None else cache.length)
        bias = None
        if self.position_bias is not None:
            bias = self.position_bias(T, total, device=x.device)  # (1, H, T, total)
        self_attentions, cross_attentions, routers = [], [], []
        for i, layer in enumerate(self.layers):
            x, self_weights, cross_weights, router = layer(
                x, memory, mask=mask, memory_mask=memory_mask, bias=bias,
                cache=None if cache is None else cache.layers[i],
                position_ids=position_ids, need_weights=output_attentions,
            )
            self_attentions.append(self_weights)
            cross_attentions.append(cross_weights)
            if router is not None:
                routers.append(router)
        if self.final_norm is not None:
            x = self.final_norm(x)
        if not output_attentions:
            return DecoderOutput(x, cache=cache, routers=tuple(routers) or None)
        has_cross = any(w is not None for w in cross_attentions)
        return DecoderOutput(
            x, tuple(self_attentions), tuple(cross_attentions) if has_cross else None, cache,
            tuple(routers) or None,
        )
