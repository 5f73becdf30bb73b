"""What every decoder-only family shares: config checks, the output type, the next-token loss,
the KV cache and `generate` (GenerationMixin, kind "decoder-only"). Families (gpt.py, llama.py)
supply the layers."""

from __future__ import annotations

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
    key_padding_mask,
)
from attnlab.nn.cache import DecoderCache


def check_decoder_config(config: Any) -> None:
    """Positive sizes, heads dividing the width, special token ids inside the vocabulary."""
    check_positive_ints(config, ("vocab_size", "max_seq_len", "d_model", "n_heads", "n_layers",
                                 "d_ff"))
    if config.d_model % config.n_heads:
        raise ValueError(
            f"d_model ({config.d_model}) must be divisible by n_heads ({config.n_heads})"
        )
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        value = getattr(config, name)
        if value is not None and not 0 <= value < config.vocab_size:
            raise ValueError(f"{name} must be in [0, vocab_size={config.vocab_size}), "
                             f"got {value}")


@dataclass
class CausalLMOutput:
    logits: Tensor  # (B, T, V)
    loss: Tensor | None = None
    attentions: tuple[Tensor, ...] | None = None  # per layer (B, H, T, past + T)
    cache: DecoderCache | None = None


def next_token_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy of position t predicting labels[t + 1] (-100 ignored), as in HF."""
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)).float(),
                           labels[:, 1:].reshape(-1), ignore_index=-100)


class CausalLM(GenerationMixin, PretrainedModel):
    """Base of decoder-only models. A family supplies `config`, `embed_tokens`, `decoder` (an
    attnlab.nn Decoder without cross-attention), `lm_head` and `embed`; `generate` continues a
    prompt (see GenerationMixin)."""

    model_kind: ClassVar[str] = DECODER_ONLY
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
        loss = None if labels is None else next_token_loss(logits, labels)
        return CausalLMOutput(logits, loss, out.attentions, cache)

    def new_cache(self, max_length: int | None = None) -> DecoderCache:
        """An empty cache for incremental decoding; `max_length` preallocates room for that many
        positions (at most config.max_seq_len) instead of growing the keys/values each step."""
        if max_length is not None and not 0 < max_length <= self.config.max_seq_len:
            raise ValueError(f"max_length must be in [1, max_seq_len={self.config.max_seq_len}],"
                             f" got {max_length}")
        return DecoderCache.empty(self.config.n_layers, max_length=max_length)
