"""What one decoding run feeds the model, for each kind of model: the tokens so far, the cache,
and how to get the next-token logits. Greedy search, sampling and beam search are written once
against this interface (`sequences`, `next_logits`, `append`, `reorder`) and so work for
encoder-decoders and decoder-only models alike.

- `EncoderDecoderState`: the encoder runs once (its output repeated per beam); the decoder
  starts from `decoder_start_token_id` and, with a cache, is fed one token per step
  (self-attention keys/values add one position, cross-attention keys/values are projected
  once); `use_cache=False` re-runs the decoder over the whole prefix each step (the oracle).
  The model offers `encode`, `decode`, `lm_head`, `new_cache()`. Given `max_new_tokens`, a
  model whose `new_cache` takes `max_length` (the 2017 Transformer, Marian, T5) gets its
  self-attention caches preallocated for that many positions, written in place, as the
  decoder-only state does (`preallocate_cache=False`: they grow by concatenation); beam
  reordering leaves the cross-attention caches alone (a sentence's beams share its source).
- `DecoderOnlyState` (GPT-2 style): the prompt, left-padded where rows differ in length, runs
  once through the model with a KV cache (preallocated for prompt + new tokens by default, as
  Hugging Face's static cache; `preallocate_cache=False` grows it by concatenation); then one
  token per step, at the next position of each row. The model is called as
  `model(ids, attention_mask=, position_ids=, cache=)` and offers `new_cache(max_length)`.
"""

from __future__ import annotations

import inspect

import torch
from torch import Tensor, nn

from attnlab.errors import ConfigError
from attnlab.nn.cache import DecoderCache
from attnlab.nn.functional import check_attention_mask


class EncoderDecoderState:
    """Decoding state of an encoder-decoder; `sequences` (N, t) starts with the start token and
    N = batch * beams (each source row repeated `beams` times, consecutively)."""

    def __init__(self, model: nn.Module, input_ids: Tensor, attention_mask: Tensor | None = None,
                 *, beams: int = 1, use_cache: bool = True, max_new_tokens: int | None = None,
                 preallocate_cache: bool = True) -> None:
        self.model = model
        memory = model.encode(input_ids, attention_mask).last_hidden_state  # (B, S, D)
        self.memory = memory.repeat_interleave(beams, dim=0) if beams > 1 else memory
        if attention_mask is not None and beams > 1:
            attention_mask = attention_mask.repeat_interleave(beams, dim=0)  # (N, S)
        self.attention_mask = attention_mask
        self.cache = None
        if use_cache:
            # At most max_new_tokens decoder positions are fed: the start token and every
            # generated token but the last.
            length = None if not preallocate_cache or max_new_tokens is None else min(
                max_new_tokens, model.config.max_seq_len)
            self.cache = new_cache(model, length)
        N = input_ids.size(0) * beams
        start = model.config.decoder_start_token_id
        self.sequences = input_ids.new_full((N, 1), start)  # (N, 1)
        self.prefix_length = 1  # the start token: generated tokens are sequences[:, 1:]

    def next_logits(self) -> Tensor:
        """Logits (N, V) of the token after `sequences`."""
        step_ids = self.sequences[:, -1:] if self.cache is not None else self.sequences
        hidden = self.model.decode(step_ids, self.memory, attention_mask=self.attention_mask,
                                   cache=self.cache)
        return self.model.lm_head(hidden.last_hidden_state[:, -1])  # (N, V)

    def append(self, next_ids: Tensor) -> None:
        self.sequences = torch.cat([self.sequences, next_ids[:, None]], dim=1)  # (N, t + 1)

    def reorder(self, index: Tensor) -> None:
        """Follow rows `index` (N,) (beam search: the surviving hypotheses), each a row of the
        same sentence's beams. The memory, its mask and the cross-attention caches are identical
        within a sentence's beams, so they need no reordering."""
        self.sequences = self.sequences[index]
        if isinstance(self.cache, DecoderCache):  # beams stay within their sentence
            self.cache.reorder(index, cross=False)
        elif self.cache is not None:  # another family's decoding state (RNN, ConvS2S)
            self.cache.reorder(index)


def new_cache(model: nn.Module, max_length: int | None) -> object:
    """`model.new_cache(max_length)` where the model's new_cache takes a length and one is
    given, else `model.new_cache()` (a family whose decoding state is not a KV cache)."""
    if max_length is not None and "max_length" in inspect.signature(model.new_cache).parameters:
        return model.new_cache(max_length)
    return model.new_cache()


class DecoderOnlyState:
    """Decoding state of a decoder-only model; `sequences` (N, T + t) is the prompt followed by
    the tokens so far, N = batch * beams."""

    def __init__(self, model: nn.Module, input_ids: Tensor, attention_mask: Tensor | None = None,
                 *, max_new_tokens: int, beams: int = 1, preallocate_cache: bool = True) -> None:
        config = model.config
        T = input_ids.size(1)
        if T + max_new_tokens > config.max_seq_len:
            raise ConfigError(f"prompt length {T} + max_new_tokens {max_new_tokens} exceeds the "
                             f"model's context of {config.max_seq_len} positions")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        check_attention_mask(attention_mask, *input_ids.shape)  # exactly (B, T), never broadcast
        if beams > 1:
            input_ids = input_ids.repeat_interleave(beams, dim=0)  # (N, T)
            attention_mask = attention_mask.repeat_interleave(beams, dim=0)  # (N, T)
        self.model = model
        self.sequences = input_ids  # (N, T)
        self.prefix_length = T
        self.mask = attention_mask.long()  # (N, T)
        # Left padding: real tokens count positions from 0; padding positions are never attended.
        # Padding positions occupy cache slots too (they are masked out).
        self.positions = (self.mask.cumsum(-1) - 1).clamp_min(0)  # (N, T), then (N, 1)
        cache_length = min(T + max_new_tokens, config.max_seq_len)
        self.cache = model.new_cache(cache_length if preallocate_cache else None)
        self.fed = 0  # positions of `sequences` already in the cache

    def next_logits(self) -> Tensor:
        """Logits (N, V) of the token after `sequences` (runs the prompt on the first call)."""
        new = self.sequences[:, self.fed:]  # (N, T) first, then (N, 1)
        logits = self.model(new, attention_mask=self.mask, position_ids=self.positions,
                            cache=self.cache).logits  # (N, T or 1, V)
        self.fed = self.sequences.size(1)
        self.positions = self.positions[:, -1:] + 1  # (N, 1) the next position of every row
        return logits[:, -1]  # (N, V)

    def append(self, next_ids: Tensor) -> None:
        self.sequences = torch.cat([self.sequences, next_ids[:, None]], dim=1)  # (N, t + 1)
        self.mask = torch.cat([self.mask, torch.ones_like(self.mask[:, :1])], dim=1)

    def reorder(self, index: Tensor) -> None:
        """Follow rows `index` (N,) (beam search: the surviving hypotheses)."""
        self.sequences = self.sequences[index]
        self.mask, self.positions = self.mask[index], self.positions[index]
        self.cache.reorder(index)
