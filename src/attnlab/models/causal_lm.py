"""What every decoder-only family shares: config checks, the output type, the next-token loss,
the KV cache and `generate`. Families (gpt.py, llama.py) supply the layers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.nn.cache import DecoderCache


def check_decoder_config(config: Any) -> None:
    """Positive sizes, heads dividing the width, special token ids inside the vocabulary."""
    for name in ("vocab_size", "max_seq_len", "d_model", "n_heads", "n_layers", "d_ff"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
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


class CausalLM(nn.Module):
    """Base of decoder-only models: needs `config.n_layers` and a forward taking
    (input_ids, attention_mask, position_ids=, cache=)."""

    config: Any

    def new_cache(self) -> DecoderCache:
        return DecoderCache.empty(self.config.n_layers)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def generate(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                 **settings) -> Tensor:
        """Greedy or sampled continuation; see `attnlab.generation.generate` for the settings."""
        from attnlab.generation.sampling import generate

        return generate(self, input_ids, attention_mask, **settings)
