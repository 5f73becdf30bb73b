"""Token-by-token decoding, one token per row per step: greedy (the argmax of the processed
logits) or sampled (a draw from their softmax, from a local `torch.Generator` when seeded, never
the global RNG). Works on any decoding state of `generation.state` (encoder-decoder or
decoder-only); rows that emitted EOS continue with `pad_id`.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from attnlab.generation.processors import LogitsProcessor, logits_processor
from attnlab.generation.state import DecoderOnlyState, EncoderDecoderState

State = EncoderDecoderState | DecoderOnlyState


def seeded_generator(seed: int | None, device: torch.device) -> torch.Generator | None:
    """A local generator seeded with `seed` (None: draw from torch's global generator)."""
    return None if seed is None else torch.Generator(device=device).manual_seed(seed)


def decode_steps(
    state: State,
    *,
    max_new_tokens: int,
    eos_id: int,
    pad_id: int,
    processor: LogitsProcessor | None = None,
    do_sample: bool = False,
    generator: torch.Generator | None = None,
) -> Iterator[Tensor]:
    """Yield the next token of every row (N,) for at most `max_new_tokens` steps, stopping once
    every row has emitted `eos_id`. The model is never run for a token that is not needed."""
    processor = processor or logits_processor()
    N = state.sequences.size(0)
    finished = torch.zeros(N, dtype=torch.bool, device=state.sequences.device)  # (N,)
    for step in range(max_new_tokens):
        scores = processor(state.next_logits(), state.sequences)  # (N, V)
        if do_sample:
            next_ids = torch.multinomial(scores.softmax(-1), 1, generator=generator)[:, 0]
        else:
            next_ids = scores.argmax(-1)  # (N,)
        next_ids = next_ids.masked_fill(finished, pad_id)
        state.append(next_ids)
        finished |= next_ids == eos_id
        yield next_ids
        if bool(finished.all()) or step == max_new_tokens - 1:
            return
