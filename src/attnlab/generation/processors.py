"""Logits processors: pure functions from next-token logits (N, V) (and the tokens so far) to
new logits, composed once per `generate` call and used by greedy search, sampling and beam
search alike.

- repetition penalty (Keskar et al. 2019, CTRL): tokens already in the sequence are made less
  likely; it changes what greedy and beam search pick;
- temperature, top-k, then nucleus / top-p (Holtzman et al. 2020): these shape the sampling
  distribution and are part of the pipeline only when sampling. Greedy would pick the same
  argmax with or without them; in beam search they would change the scores being searched, so
  (as in Hugging Face) they are left out there.

Greedy takes the argmax of the processed logits, sampling draws from their softmax, beam search
scores with their log_softmax. Nothing here keeps state between calls.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
from torch import Tensor

from attnlab.errors import ConfigError

# (logits (N, V) float, sequences (N, t) ids so far) -> processed logits (N, V)
LogitsProcessor = Callable[[Tensor, Tensor], Tensor]


def check_settings(*, max_new_tokens: int, do_sample: bool, temperature: float, top_k: int,
                   top_p: float, repetition_penalty: float) -> None:
    """Raise a ConfigError naming the first setting out of range."""
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) \
            or max_new_tokens <= 0:
        raise ConfigError(f"max_new_tokens must be a positive int, got {max_new_tokens!r}")
    if do_sample and not temperature > 0:
        raise ConfigError(f"temperature must be > 0 when sampling, got {temperature}")
    if not 0 < top_p <= 1:
        raise ConfigError(f"top_p must be in (0, 1], got {top_p}")
    if top_k < 0:
        raise ConfigError(f"top_k must be >= 0 (0 = off), got {top_k}")
    if not repetition_penalty > 0:
        raise ConfigError(f"repetition_penalty must be > 0 (1 = off), got {repetition_penalty}")


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


def scale_temperature(logits: Tensor, temperature: float) -> Tensor:
    """logits / temperature (below 1 sharpens the distribution, above 1 flattens it)."""
    return logits if temperature == 1.0 else logits / temperature


def _repetition(penalty: float, logits: Tensor, sequences: Tensor) -> Tensor:
    return penalize_repetition(logits, sequences, penalty)


def _temperature(temperature: float, logits: Tensor, sequences: Tensor) -> Tensor:
    return scale_temperature(logits, temperature)


def _top_k_top_p(top_k: int, top_p: float, logits: Tensor, sequences: Tensor) -> Tensor:
    return filter_top_k_top_p(logits, top_k, top_p)


def _compose(steps: Sequence[LogitsProcessor], logits: Tensor, sequences: Tensor) -> Tensor:
    logits = logits.float()  # (N, V): processing and scoring in float32 whatever the model's
    for step in steps:
        logits = step(logits, sequences)
    return logits


def logits_processor(*, do_sample: bool = False, temperature: float = 1.0, top_k: int = 0,
                     top_p: float = 1.0, repetition_penalty: float = 1.0) -> LogitsProcessor:
    """The one pipeline for these settings: repetition penalty, then (sampling only)
    temperature, top-k, top-p. Returns a pure function (logits (N, V), sequences (N, t)) ->
    float32 logits (N, V)."""
    steps: list[LogitsProcessor] = []
    if repetition_penalty != 1.0:
        steps.append(partial(_repetition, repetition_penalty))
    if do_sample:
        if temperature != 1.0:
            steps.append(partial(_temperature, temperature))
        if top_k > 0 or top_p < 1.0:
            steps.append(partial(_top_k_top_p, top_k, top_p))
    return partial(_compose, tuple(steps))
