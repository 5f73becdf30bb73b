"""Transformer layers (Vaswani et al., 2017, sec. 3.1), built from injected submodules.

Each sub-layer is wrapped in a residual connection with dropout and a norm, either after the
sum as in the paper (post-norm: LayerNorm(x + Dropout(Sublayer(x)))) or before the sub-layer
(pre-norm: x + Dropout(Sublayer(LayerNorm(x))), Xiong et al., 2020), which trains deep stacks
without warmup tricks. Layers receive built modules, so a model file reads as its architecture.
The feed-forward sub-layer may be a mixture of experts (`nn/moe.py`): its routing comes back in
`LayerOutput.router`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from torch import Tensor, nn

from attnlab.nn.attention.base import AttentionOutput
from attnlab.nn.cache import DecoderLayerCache
from attnlab.nn.moe import MoEOutput, RouterOutput


class LayerOutput(NamedTuple):
    hidden: Tensor  # (B, T, D)
    self_weights: Tensor | None  # (B, H, T, T_total) when asked
    cross_weights: Tensor | None  # (B, H, T, S) when asked (decoder with cross-attention)
    router: RouterOutput | None = None  # the routing of a mixture-of-experts feed-forward


class ResidualLayer(nn.Module):
    """Shared residual wiring `residual(x, norm, sublayer)`; norm placement set by `norm_first`."""

    def __init__(self, dropout: float, norm_first: bool) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.norm_first = norm_first

    def residual(
        self, x: Tensor, norm: nn.Module,
        sublayer: Callable[[Tensor], AttentionOutput | MoEOutput | Tensor],
    ) -> tuple[Tensor, Tensor | RouterOutput | None]:
        """The new x and what the sub-layer said beside its output: attention weights (an
        attention sub-layer asked for them), a RouterOutput (mixture of experts) or None."""
        out = sublayer(norm(x) if self.norm_first else x)
        extra = None
        if isinstance(out, AttentionOutput):
            out, extra = out.output, out.weights
        elif isinstance(out, MoEOutput):
            out, extra = out.output, out.router
        x = x + self.dropout(out)
        return (x if self.norm_first else norm(x)), extra


class EncoderLayer(ResidualLayer):
    """Self-attention then feed-forward, each a residual sub-layer."""

    def __init__(
        self,
        self_attn: nn.Module,
        feed_forward: nn.Module,
        self_attn_norm: nn.Module,
        ffn_norm: nn.Module,
        *,
        dropout: float = 0.1,
        norm_first: bool = False,
    ) -> None:
        super().__init__(dropout, norm_first)
        self.self_attn = self_attn
        self.feed_forward = feed_forward
        self.self_attn_norm = self_attn_norm
        self.ffn_norm = ffn_norm

    def forward(
        self,
        x: Tensor,
        *,
        mask: Tensor | None = None,
        causal: bool = False,
        bias: Tensor | None = None,
        position_ids: Tensor | None = None,
        need_weights: bool = False,
    ) -> LayerOutput:
        x, weights = self.residual(
            x,
            self.self_attn_norm,
            lambda h: self.self_attn(
                h, mask=mask, causal=causal, bias=bias, position_ids=position_ids,
                need_weights=need_weights,
            ),
        )
        x, router = self.residual(x, self.ffn_norm, self.feed_forward)
        return LayerOutput(x, weights, None, router)


class DecoderLayer(ResidualLayer):
    """Masked self-attention, cross-attention over the encoder output (when `cross_attn` is
    given; decoder-only models pass None), then feed-forward."""

    def __init__(
        self,
        self_attn: nn.Module,
        cross_attn: nn.Module | None,
        feed_forward: nn.Module,
        self_attn_norm: nn.Module,
        cross_attn_norm: nn.Module | None,
        ffn_norm: nn.Module,
        *,
        dropout: float = 0.1,
        norm_first: bool = False,
    ) -> None:
        super().__init__(dropout, norm_first)
        if (cross_attn is None) != (cross_attn_norm is None):
            raise ValueError("cross_attn and cross_attn_norm must be given together")
        self.self_attn = self_attn
        self.cross_attn = cross_attn
        self.feed_forward = feed_forward
        self.self_attn_norm = self_attn_norm
        self.cross_attn_norm = cross_attn_norm
        self.ffn_norm = ffn_norm

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        *,
        mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        cache: DecoderLayerCache | None = None,
        bias: Tensor | None = None,
        position_ids: Tensor | None = None,
        need_weights: bool = False,
    ) -> LayerOutput:
        x, self_weights = self.residual(
            x,
            self.self_attn_norm,
            lambda h: self.self_attn(
                h, mask=mask, causal=True, bias=bias, position_ids=position_ids,
                cache=None if cache is None else cache.self_attn, need_weights=need_weights,
            ),
        )
        cross_weights = None
        if self.cross_attn is not None:
            cross_cache = None if cache is None else cache.cross_attn
            if memory is None and (cross_cache is None or not cross_cache.is_filled):
                raise ValueError("this decoder layer has cross-attention: pass `memory`")
            x, cross_weights = self.residual(
                x,
                self.cross_attn_norm,
                lambda h: self.cross_attn(
                    h, memory, mask=memory_mask, cache=cross_cache, need_weights=need_weights
                ),
            )
        x, router = self.residual(x, self.ffn_norm, self.feed_forward)
        return LayerOutput(x, self_weights, cross_weights, router)
