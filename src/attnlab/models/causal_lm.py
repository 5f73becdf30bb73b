"""What every decoder-only family shares: config checks, the output type, the next-token loss,
the KV cache and `generate` (GenerationMixin, kind "decoder-only"). Families (gpt.py, llama.py)
supply the layers.

A family whose config has `moe` (nn/moe.py) gets the mixture-of-experts terms in its output, as
transformers' MixtralForCausalLM with output_router_logits=True: the Switch load-balancing loss
over every MoE layer's router logits (padding left out by the attention mask), ST-MoE's router
z-loss, the per-expert load and the dropped share; with labels, `loss` adds the weighted
auxiliary terms to the next-token loss (`lm_loss`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from attnlab.generation.mixin import DECODER_ONLY, GenerationMixin
from attnlab.models.common import (
    PretrainedModel,
    check_input_ids,
    check_positive_ints,
    check_token_ids,
    key_padding_mask,
)
from attnlab.nn.cache import DecoderCache
from attnlab.nn.moe import MoEConfig, RouterOutput, load_balancing_loss


def check_decoder_config(config: Any) -> None:
    """Positive sizes, heads dividing the width, special token ids inside the vocabulary."""
    check_positive_ints(config, ("vocab_size", "max_seq_len", "d_model", "n_heads", "n_layers",
                                 "d_ff"))
    if config.d_model % config.n_heads:
        raise ValueError(
            f"d_model ({config.d_model}) must be divisible by n_heads ({config.n_heads})"
        )
    check_token_ids(config)


@dataclass
class CausalLMOutput:
    logits: Tensor  # (B, T, V)
    loss: Tensor | None = None  # lm_loss + the weighted MoE terms (with labels)
    attentions: tuple[Tensor, ...] | None = None  # per layer (B, H, T, past + T)
    cache: DecoderCache | None = None
    lm_loss: Tensor | None = None  # the next-token loss alone (with labels)
    # Mixture of experts only (None for dense models):
    aux_loss: Tensor | None = None  # () load-balancing loss over every MoE layer
    z_loss: Tensor | None = None  # () router z-loss, mean over MoE layers
    router_logits: tuple[Tensor, ...] | None = None  # per MoE layer (B * T, E) float32
    expert_load: Tensor | None = None  # (L_moe, E) share of each layer's assignments
    dropped_fraction: Tensor | None = None  # () share of assignments dropped by capacity


def moe_terms(stacks: Sequence[tuple[Sequence[RouterOutput], Tensor | None]],
              moe: MoEConfig) -> dict[str, Any]:
    """The MoE output fields of one or two stacks' routers, each with the (B, T) mask of the
    tokens it routed: aux_loss and z_loss summed over the stacks (one stack: Mixtral's
    load-balancing loss over all its layers at once, and the mean z-loss of its layers; two:
    encoder + decoder, as transformers' SwitchTransformers), router logits, expert load and
    dropped share over all layers."""
    routers = [r for layers, _ in stacks for r in layers]
    tokens = torch.stack([r.expert_tokens for r in routers])  # (L_moe, E)
    return dict(
        aux_loss=sum(load_balancing_loss([r.logits for r in layers], moe.experts, moe.top_k,
                                         mask) for layers, mask in stacks),
        z_loss=sum(torch.stack([r.z_loss for r in layers]).mean() for layers, _ in stacks),
        router_logits=tuple(r.logits for r in routers),
        expert_load=tokens / tokens.sum(-1, keepdim=True).clamp_min(1),
        dropped_fraction=torch.stack([r.dropped for r in routers]).sum() / tokens.sum(),
    )


def with_moe_losses(terms: dict[str, Any], lm_loss: Tensor | None,
                    moe: MoEConfig) -> Tensor | None:
    """lm_loss + aux_loss_coef * aux_loss + z_loss_coef * z_loss (None without labels)."""
    if lm_loss is None:
        return None
    loss = lm_loss + moe.aux_loss_coef * terms["aux_loss"]
    return loss + moe.z_loss_coef * terms["z_loss"] if moe.z_loss_coef else loss


def next_token_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy of position t predicting labels[t + 1] (-100 ignored), as in HF."""
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)).float(),
                           labels[:, 1:].reshape(-1), ignore_index=-100)


class CausalLM(GenerationMixin, PretrainedModel):
    """Base of decoder-only models. A family supplies `config`, `embed_tokens`, `decoder` (an
    attnlab.nn Decoder without cross-attention), `lm_head` and `embed`; `generate` continues a
    prompt (see GenerationMixin)."""

    model_kind: ClassVar[str] = DECODER_ONLY
    # True for families whose layers are recurrent sequence mixers (nn/mixers/): their cache
    # is a fixed-size RecurrentState per layer instead of keys and values
    recurrent: ClassVar[bool] = False
    # False for a decoder over another vocabulary than text (text-to-image: caption + VQ codes),
    # which `attnlab train lm` cannot train
    text_lm: ClassVar[bool] = True
    config: Any

    def embed(self, input_ids: Tensor, position_ids: Tensor) -> Tensor:
        """(B, T) ids and their positions -> (B, T, D) decoder input."""
        raise NotImplementedError

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        labels: Tensor | None = None,
        *,
        position_ids: Tensor | None = None,
        cache: DecoderCache | None = None,
        output_attentions: bool = False,
    ) -> CausalLMOutput:
        """input_ids (B, T) after `cache.length` cached positions; attention_mask (B, past + T)
        with 1 for real tokens; labels (B, T) are the inputs themselves (shifted inside, -100
        ignored), as in Hugging Face. Positions default to past .. past + T - 1."""
        past = 0 if cache is None else cache.length
        check_input_ids(input_ids, self.config, "input_ids", offset=past)
        if position_ids is None:
            position_ids = torch.arange(past, past + input_ids.size(1), device=input_ids.device)
        batch, length = input_ids.size(0), past + input_ids.size(1)
        mask = key_padding_mask(attention_mask, batch, length)  # (B, 1, 1, past + T)
        out = self.decoder(self.embed(input_ids, position_ids), mask=mask, cache=cache,
                           position_ids=position_ids, output_attentions=output_attentions)
        logits = self.lm_head(out.last_hidden_state)  # (B, T, V)
        lm_loss = None if labels is None else next_token_loss(logits, labels)
        if not out.routers:
            return CausalLMOutput(logits, lm_loss, out.attentions, cache, lm_loss)
        mask = None if attention_mask is None else attention_mask[:, past:]  # (B, T) routed
        terms = moe_terms([(out.routers, mask)], self.config.moe)
        return CausalLMOutput(logits, with_moe_losses(terms, lm_loss, self.config.moe),
                              out.attentions, cache, lm_loss, **terms)

    def new_cache(self, max_length: int | None = None) -> DecoderCache:
        """An empty cache for incremental decoding; `max_length` preallocates room for that many
        positions (at most config.max_seq_len) instead of growing the keys/values each step.
        A recurrent family gets one RecurrentState per layer, whose size does not depend on
        the length (`max_length` is only checked)."""
        if max_length is not None and not 0 < max_length <= self.config.max_seq_len:
            raise ValueError(f"max_length must be in [1, max_seq_len={self.config.max_seq_len}],"
                             f" got {max_length}")
        if self.recurrent:
            return DecoderCache.recurrent(self.config.n_layers)
        return DecoderCache.empty(self.config.n_layers, max_length=max_length)
