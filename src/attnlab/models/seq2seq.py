"""What every encoder-decoder family shares: the output type and a Hugging Face style forward
(teacher forcing from labels, encode, decode, output projection, loss). Families (the 2017
Transformer, T5, the RNN and ConvS2S baselines) supply `encode`, `decode`, `lm_head` and
`new_cache`; `generate` (GenerationMixin, kind "encoder-decoder"), greedy and beam search use the
same four.

A family whose stacks hold mixture-of-experts layers (T5 with `moe`) gets the MoE terms in its
output as `models/causal_lm.py` defines them, the encoder's and the decoder's load-balancing and
z-losses summed (transformers' SwitchTransformers does the same)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor

from attnlab.generation.mixin import ENCODER_DECODER, GenerationMixin
from attnlab.models.causal_lm import moe_terms, with_moe_losses
from attnlab.models.common import PretrainedModel, shift_right


@dataclass
class Seq2SeqOutput:
    """Hugging Face style output of an encoder-decoder forward pass."""

    logits: Tensor  # (B, T, V)
    loss: Tensor | None = None
    encoder_last_hidden_state: Tensor | None = None  # (B, S, D)
    encoder_attentions: tuple[Tensor, ...] | None = None  # per layer (B, H, S, S)
    decoder_attentions: tuple[Tensor, ...] | None = None  # per layer (B, H, T, T)
    cross_attentions: tuple[Tensor, ...] | None = None  # per layer (B, H, T, S)
    cache: Any = None  # the family's decoding state (KV caches, RNN state, conv windows)
    lm_loss: Tensor | None = None  # the cross-entropy alone (with labels)
    # Mixture of experts only (None for dense models); encoder layers first, then decoder:
    aux_loss: Tensor | None = None  # () encoder + decoder load-balancing losses
    z_loss: Tensor | None = None  # () encoder + decoder mean router z-losses
    router_logits: tuple[Tensor, ...] | None = None  # per MoE layer (B * T, E) float32
    expert_load: Tensor | None = None  # (L_moe, E) share of each layer's assignments
    dropped_fraction: Tensor | None = None  # () share of assignments dropped by capacity


class EncoderDecoderModel(GenerationMixin, PretrainedModel):
    """Base of encoder-decoder models. `encode(input_ids, attention_mask, output_attentions)`
    returns an object with `last_hidden_state` (the memory decode reads); `decode(ids, memory,
    *, attention_mask, decoder_attention_mask, cache, output_attentions)` one with
    `last_hidden_state` (B, T, D) and `cross_attentions`. `generate` reads a source and writes
    a target (see GenerationMixin)."""

    model_kind: ClassVar[str] = ENCODER_DECODER
    config: Any

    def forward(
        self,
        input_ids: Tensor,
        decoder_input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        decoder_attention_mask: Tensor | None = None,
        labels: Tensor | None = None,
        *,
        output_attentions: bool = False,
        cache: Any = None,
    ) -> Seq2SeqOutput:
        """labels (B, T) are the targets; decoder inputs default to them shifted right after
        `decoder_start_token_id`; the loss is the mean cross-entropy over the labels that are not
        -100, as in Hugging Face (label smoothing belongs to the training run, which computes
        it from the logits)."""
        c = self.config
        if decoder_input_ids is None:
            if labels is None:
                raise ValueError("pass decoder_input_ids, or labels to derive them from")
            decoder_input_ids = shift_right(labels, c.decoder_start_token_id, c.pad_token_id)
        enc = self.encode(input_ids, attention_mask, output_attentions)
        dec = self.decode(decoder_input_ids, enc.last_hidden_state, attention_mask=attention_mask,
                          decoder_attention_mask=decoder_attention_mask, cache=cache,
                          output_attentions=output_attentions)
        logits = self.lm_head(dec.last_hidden_state)  # (B, T, V)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(),
                                   ignore_index=-100)
        out = Seq2SeqOutput(
            logits=logits, loss=loss, encoder_last_hidden_state=enc.last_hidden_state,
            encoder_attentions=getattr(enc, "attentions", None),
            decoder_attentions=getattr(dec, "attentions", None),
            cross_attentions=getattr(dec, "cross_attentions", None), cache=dec.cache,
            lm_loss=loss,
        )
        T = decoder_input_ids.size(1)
        target_mask = None if decoder_attention_mask is None else decoder_attention_mask[:, -T:]
        stacks = [(routers, mask) for routers, mask in (
            (getattr(enc, "routers", None), attention_mask),
            (getattr(dec, "routers", None), target_mask)) if routers]
        if stacks:
            terms = moe_terms(stacks, c.moe)
            out.loss = with_moe_losses(terms, loss, c.moe)
            for name, value in terms.items():
                setattr(out, name, value)
        return out
