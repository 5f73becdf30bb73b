"""Text generation for decoder-only models (GPT-2 style): greedy or sampled, batched with left
padding, with a KV cache so each step feeds one token (preallocated for the whole run by
default, as Hugging Face's static cache; `preallocate_cache=False` grows it by concatenation).

Sampling follows the usual pipeline on the last position's logits: repetition penalty (Keskar
et al. 2019, CTRL), temperature, top-k, then nucleus / top-p (Holtzman et al. 2020).

    ids = generate(model, prompt_ids, attention_mask, max_new_tokens=50, do_sample=True,
                   temperature=0.8, top_p=0.95, seed=0)
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn


def check_settings(*, max_new_tokens: int, do_sample: bool, temperature: float, top_k: int,
                   top_p: float, repetition_penalty: float) -> None:
    if max_new_tokens <= 0:
        raise ValueError(f"max_new_tokens must be positive, got {max_new_tokens}")
    if do_sample and not temperature > 0:
        raise ValueError(f"temperature must be > 0 when sampling, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0 (0 = off), got {top_k}")
    if not repetition_penalty > 0:
        raise ValueError(f"repetition_penalty must be > 0 (1 = off), got {repetition_penalty}")


def penalize_repetition(logits: Tensor, sequences: Tensor, penalty: float) -> Tensor:
    """Make tokens already in `sequences` (B, T) less likely: positive logits are divided by
    `penalty`, negative ones multiplied (CTRL's rule, as in Hugging Face)."""
    if penalty == 1.0:
        return logits
    seen = torch.gather(logits, 1, sequences)  # (B, T)
    seen = torch.where(seen < 0, seen * penalty, seen / penalty)
    return logits.scatter(1, sequences, seen)


def filter_top_k_top_p(logits: Tensor, top_k: int, top_p: float) -> Tensor:
    """Set logits outside the top-k and outside the smallest set with probability >= top_p to
    -inf (the most likely token always survives). logits: (B, V)."""
    if top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.size(-1)), dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)  # (B, V)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop = cumulative - sorted_logits.softmax(-1) >= top_p  # mass before this token
        drop[:, 0] = False
        logits = logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    return logits


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
    check_settings(max_new_tokens=max_new_tokens, do_sample=do_sample, temperature=temperature,
                   top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty)
    config = model.config
    B, T = input_ids.shape
    if T + max_new_tokens > config.max_seq_len:
        raise ValueError(f"prompt length {T} + max_new_tokens {max_new_tokens} exceeds the "
                         f"model's context of {config.max_seq_len} positions")
    eos = config.eos_token_id if eos_token_id is None else eos_token_id
    pad = eos if pad_token_id is None else pad_token_id
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    if attention_mask.shape != input_ids.shape:
        raise ValueError(f"attention_mask {tuple(attention_mask.shape)} must match input_ids "
                         f"{tuple(input_ids.shape)}")
    generator = None
    if seed is not None:
        generator = torch.Generator(device=input_ids.device).manual_seed(seed)
    model.eval()
    mask = attention_mask.long()
    # Left padding: real tokens count positions from 0; padding positions are never attended.
    positions = (mask.cumsum(-1) - 1).clamp_min(0)  # (B, T)
    # Preallocated: keys/values written in place into room for the whole run, not re-copied by
    # torch.cat every step. Padding positions occupy cache slots too (they are masked out).
    cache_length = min(T + max_new_tokens, config.max_seq_len)
    cache = model.new_cache(cache_length if preallocate_cache else None)
    logits = model(input_ids, attention_mask=mask, position_ids=positions, cache=cache).logits
    sequences = input_ids
    finished = torch.zeros(B, dtype=torch.bool, device=input_ids.device)
    next_position = positions[:, -1:] + 1  # (B, 1)
    for step in range(max_new_tokens):
        scores = penalize_repetition(logits[:, -1].float(), sequences, repetition_penalty)
        if do_sample:
            scores = filter_top_k_top_p(scores / temperature, top_k, top_p)
            next_ids = torch.multinomial(scores.softmax(-1), 1, generator=generator)[:, 0]
        else:
            next_ids = scores.argmax(-1)  # (B,)
        next_ids = next_ids.masked_fill(finished, pad)
        sequences = torch.cat([sequences, next_ids[:, None]], dim=1)  # (B, t + 1)
        finished |= next_ids == eos
        yield next_ids
        if bool(finished.all()) or step == max_new_tokens - 1:
            return
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)  # (B, t + 1)
        logits = model(next_ids[:, None], attention_mask=mask, position_ids=next_position,
                       cache=cache).logits  # (B, 1, V)
        next_position = next_position + 1


def generate(model: nn.Module, input_ids: Tensor, attention_mask: Tensor | None = None,
             **settings) -> Tensor:
    """Prompt ids (B, T), left-padded where rows differ in length (attention_mask 0 on the
    padding), -> (B, T + n) with n <= max_new_tokens; rows that emitted EOS continue with
    `pad_token_id` (default: the EOS id). Settings: max_new_tokens, do_sample, temperature,
    top_k, top_p, repetition_penalty, eos_token_id, pad_token_id, seed, preallocate_cache
    (default True: a KV cache preallocated for prompt + max_new_tokens positions; False: one
    that grows by concatenation, the same tokens)."""
    steps = list(generate_steps(model, input_ids, attention_mask, **settings))
    return torch.cat([input_ids, torch.stack(steps, dim=1)], dim=1)


def stream_text(model: nn.Module, tokenizer, prompt: str, **settings) -> Iterator[str]:
    """Yield the continuation of `prompt` as text, piece by piece, never splitting a multi-byte
    character (a piece is held back while its decoding ends in U+FFFD). `tokenizer` is a
    `tokenizers.Tokenizer`; stops at EOS."""
    ids = torch.tensor([tokenizer.encode(prompt).ids])
    eos = settings.get("eos_token_id")
    if eos is None:  # absent or None: the model's, as in generate_steps
        eos = model.config.eos_token_id
    new: list[int] = []
    shown = ""
    for next_ids in generate_steps(model, ids, **settings):
        token = int(next_ids[0])
        if token == eos:
            break
        new.append(token)
        text = tokenizer.decode(new)
        if text.endswith("\ufffd"):
            continue  # an incomplete UTF-8 sequence: wait for its remaining bytes
        yield text[len(shown):]
        shown = text
