"""Greedy decoding for encoder-decoder models, with or without a KV cache.

With the cache, each step feeds only the newest token: self-attention keys/values grow by one
position and the cross-attention keys/values of the encoder output are projected once. Without
it, every step re-runs the decoder over the whole prefix (the slow path, kept as the oracle).
The step loop is `generation.stepwise.decode_steps`, shared with sampling and decoder-only
models; `model.generate` is the full interface.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attnlab.errors import ConfigError
from attnlab.generation.processors import LogitsProcessor
from attnlab.generation.state import EncoderDecoderState
from attnlab.generation.stepwise import decode_steps


@torch.no_grad()
def greedy_decode(
    model: nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor | None = None,
    *,
    max_new_tokens: int = 64,
    use_cache: bool = True,
    processor: LogitsProcessor | None = None,
    eos_token_id: int | None = None,
) -> Tensor:
    """Return generated ids (B, <= max_new_tokens), without the start token, stopping when every
    row has emitted EOS; rows that finished are padded with pad_token_id.

    The model must offer `encode`, `decode`, `lm_head`, `new_cache` and a config with
    `decoder_start_token_id`, `eos_token_id`, `pad_token_id`. `processor` (a pure
    `generation.processors` function, e.g. a repetition penalty) is applied before the argmax;
    `eos_token_id` defaults to the config's.
    """
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) \
            or max_new_tokens <= 0:
        raise ConfigError(f"max_new_tokens must be a positive int, got {max_new_tokens!r}")
    config = model.config
    eos = config.eos_token_id if eos_token_id is None else eos_token_id
    state = EncoderDecoderState(model, input_ids, attention_mask, use_cache=use_cache,
                                max_new_tokens=max_new_tokens)
    for _ in decode_steps(state, max_new_tokens=max_new_tokens, eos_id=eos,
                          pad_id=config.pad_token_id, processor=processor):
        pass
    return state.sequences[:, state.prefix_length:]
