"""Greedy decoding for encoder-decoder models, with or without a KV cache.

With the cache, each step feeds only the newest token: self-attention keys/values grow by one
position and the cross-attention keys/values of the encoder output are projected once. Without
it, every step re-runs the decoder over the whole prefix (the slow path, kept as the oracle).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


@torch.no_grad()
def greedy_decode(
    model: nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor | None = None,
    *,
    max_new_tokens: int = 64,
    use_cache: bool = True,
) -> Tensor:
    """Return generated ids (B, <= max_new_tokens), stopping when every row has emitted EOS.

    The model must offer `encode`, `decode`, `lm_head`, `new_cache` and a config with
    `decoder_start_token_id`, `eos_token_id`, `pad_token_id`. Rows that finished are padded.
    """
    if max_new_tokens <= 0:
        raise ValueError(f"max_new_tokens must be positive, got {max_new_tokens}")
    config = model.config
    memory = model.encode(input_ids, attention_mask).last_hidden_state  # (B, S, D)
    B = input_ids.size(0)
    prefix = input_ids.new_full((B, 1), config.decoder_start_token_id)  # (B, 1)
    finished = torch.zeros(B, dtype=torch.bool, device=input_ids.device)
    cache = model.new_cache() if use_cache else None
    for _ in range(max_new_tokens):
        step_ids = prefix[:, -1:] if use_cache else prefix  # (B, 1) or (B, t)
        hidden = model.decode(step_ids, memory, attention_mask=attention_mask, cache=cache)
        logits = model.lm_head(hidden.last_hidden_state[:, -1])  # (B, V)
        next_ids = logits.argmax(-1).masked_fill(finished, config.pad_token_id)  # (B,)
        prefix = torch.cat([prefix, next_ids[:, None]], dim=1)  # (B, t + 1)
        finished |= next_ids == config.eos_token_id
        if bool(finished.all()):
            break
    return prefix[:, 1:]
