"""Text generation for decoder-only models (GPT-2 style): greedy or sampled, batched with left
padding, with a KV cache so each step feeds one token (preallocated for the whole run by
default, as Hugging Face's static cache; `preallocate_cache=False` grows it by concatenation).

Sampling follows the usual pipeline on the last position's logits (`generation.processors`):
repetition penalty (Keskar et al. 2019, CTRL), temperature, top-k, then nucleus / top-p
(Holtzman et al. 2020). The step loop (`generation.stepwise`) and the decoding state
(`generation.state`) are shared with encoder-decoders and beam search; `model.generate` is the
full interface for every generating model.

    ids = generate(model, prompt_ids, attention_mask, max_new_tokens=50, do_sample=True,
                   temperature=0.8, top_p=0.95, seed=0)
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn

from attnlab.generation.detokenize import TextStream
from attnlab.generation.processors import (  # noqa: F401  (public names kept here)
    check_settings,
    filter_top_k_top_p,
    logits_processor,
    penalize_repetition,
)
from attnlab.generation.state import DecoderOnlyState
from attnlab.generation.stepwise import decode_steps, seeded_generator
from attnlab.tokenizers import Tokenizer


@torch.no_grad()
def generate_steps(
    model: nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor | None = None,
    *,
    max_new_tokens: int = 20,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    repetition_penalty: float = 1.0,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
    seed: int | None = None,
    preallocate_cache: bool = True,
) -> Iterator[Tensor]:
    """Yield the next token of every row (B,) step by step (see `generate`)."""
    settings = dict(do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p,
                    repetition_penalty=repetition_penalty)
    check_settings(max_new_tokens=max_new_tokens, **settings)
    eos = model.config.eos_token_id if eos_token_id is None else eos_token_id
    pad = getattr(model.config, "pad_token_id", None) if pad_token_id is None else pad_token_id
    pad = eos if pad is None else pad
    model.eval()
    state = DecoderOnlyState(model, input_ids, attention_mask, max_new_tokens=max_new_tokens,
                             preallocate_cache=preallocate_cache)
    yield from decode_steps(state, max_new_tokens=max_new_tokens, eos_id=eos, pad_id=pad,
                            processor=logits_processor(**settings), do_sample=do_sample,
                            generator=seeded_generator(seed, input_ids.device))


def generate(model: nn.Module, input_ids: Tensor, attention_mask: Tensor | None = None,
             **settings) -> Tensor:
    """Prompt ids (B, T), left-padded where rows differ in length (attention_mask 0 on the
    padding), -> (B, T + n) with n <= max_new_tokens; rows that emitted EOS continue with
    `pad_token_id` (default: the config's pad_token_id, else the EOS id, as in
    `model.generate`). Settings: max_new_tokens, do_sample, temperature, top_k, top_p,
    repetition_penalty, eos_token_id, pad_token_id, seed, preallocate_cache (default True: a
    KV cache preallocated for prompt + max_new_tokens positions; False: one that grows by
    concatenation, the same tokens)."""
    steps = list(generate_steps(model, input_ids, attention_mask, **settings))
    return torch.cat([input_ids, torch.stack(steps, dim=1)], dim=1)


def stream_text(model: nn.Module, tokenizer: Tokenizer, prompt: str,
                **settings) -> Iterator[str]:
    """Yield the continuation of `prompt` as text, piece by piece, never splitting a multi-byte
    character (`generation.detokenize.TextStream`: each token decoded after the last few
    before it). The prompt is framed by the tokenizer's own post-processor (LLaMA's <s>);
    stops at EOS."""
    device = next(model.parameters()).device
    prompt_ids = tokenizer.encoding(prompt).ids
    ids = torch.tensor([prompt_ids], device=device)  # (1, T)
    eos = settings.get("eos_token_id")
    if eos is None:  # absent or None: the model's, as in generate_steps
        eos = model.config.eos_token_id
    stream = TextStream(tokenizer, prompt_ids)
    for next_ids in generate_steps(model, ids, **settings):
        token = int(next_ids[0])
        if token == eos:
            break
        piece = stream.push(token)
        if piece:
            yield piece
