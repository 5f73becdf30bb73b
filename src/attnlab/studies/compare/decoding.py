"""Generation cost against context length: per-token latency and memory of decoding after a
context of n tokens, for a Transformer with a KV cache and for the recurrent families (Mamba,
Gu & Dao 2023; RWKV, Peng et al. 2023; RetNet, Sun et al. 2023), whose papers claim decoding in
constant time and memory per token.

For each context length n: n random real tokens run through the model with its cache, in
chunks of `prefill_chunk` positions (a 32k prefill never builds a 32k x 32k score matrix; a
Transformer's chunk attends to everything cached before it), then one warm-up step and
`new_tokens` timed one-token steps, each feeding the previous step's greedy token.

- ms_per_token: the median wall time of one decoding step (one new token for each of the
  `batch` rows), synchronised on a GPU.
- cache_bytes: `DecoderCache.nbytes` right after the prefill (keys and values of the n context
  positions, or the recurrent states, whose size does not depend on n).
- peak_bytes: what decoding holds beyond the weights: cache_bytes plus the allocator's
  high-water mark above what was allocated when the steps began (scores over the cache,
  projections, logits), over PROFILED_STEPS more steps. On CPU the high-water mark comes from
  the PyTorch profiler's allocation events, as `throughput.peak_bytes` reads it for training
  steps; on a GPU from `torch.cuda.max_memory_allocated`. Not the process's RSS: that counts
  the weights, the Python interpreter and torch's libraries (hundreds of MB that do not move
  with n) and pages the allocator keeps after a tensor is freed, so it hides what the cache
  costs; the allocator's own count is the figure both devices report the same way.
- prefill_seconds: wall time of the chunked prefill.

The KV cache is preallocated for every position the measurement feeds (as generation does by
default), so a step writes in place and allocates no copy of the cache. A recurrent mixer's
forms compute the same function; `use_fastest_form` sets the one that prefills fastest on this
machine (a one-token step is the recurrent step in every form).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from attnlab.errors import ConfigError
from attnlab.generation.state import new_cache
from attnlab.nn.mixers import SequenceMixer
from attnlab.studies.compare.throughput import peak_bytes

PROFILED_STEPS = 2  # decoding steps run under the memory profiler (after the timed ones)
KEYS = ("context", "ms_per_token", "cache_bytes", "peak_bytes", "prefill_seconds")


def _check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive int, got {value!r}")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step(model: nn.Module, ids: Tensor, cache: object) -> Tensor:
    """Feed ids (B, T) after the cached positions; the greedy next token (B, 1)."""
    logits = model(ids, cache=cache).logits  # (B, T, V)
    return logits[:, -1].argmax(-1, keepdim=True)  # (B, 1)


def prefill(model: nn.Module, ids: Tensor, cache: object, chunk: int) -> Tensor:
    """Feed ids (B, n) into the cache `chunk` positions at a time; the logits (B, V) after the
    last one. Each chunk attends to (or continues the state of) everything before it, so
    the result is that of one prefill without its (n, n) scores."""
    for first in range(0, ids.size(1), chunk):
        logits = model(ids[:, first:first + chunk], cache=cache).logits  # (B, <= chunk, V)
    return logits[:, -1]  # (B, V)


def _step_peak(model: nn.Module, ids: Tensor, cache: object, device: torch.device,
               steps: int) -> int:
    """High-water mark of bytes allocated during `steps` decoding steps, above what was
    allocated when they began."""
    def run() -> None:
        nonlocal ids
        for _ in range(steps):
            ids = _step(model, ids, cache)

    if device.type == "cuda":
        _sync(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        run()
        _sync(device)
        return max(0, torch.cuda.max_memory_allocated(device) - before)
    return peak_bytes(run)


@torch.inference_mode()
def _measure_one(model: nn.Module, context: int, *, new_tokens: int, batch: int,
                 generator: torch.Generator, prefill_chunk: int,
                 device: torch.device) -> dict[str, Any]:
    positions = context + 1 + new_tokens + PROFILED_STEPS  # every position fed to the cache
    limit = getattr(model.config, "max_seq_len", None)
    if limit is not None and positions > limit:
        raise ConfigError(
            f"context {context} + {1 + new_tokens + PROFILED_STEPS} decoding steps need "
            f"max_seq_len >= {positions}, got a model with max_seq_len={limit} (build it with "
            f"max_seq_len={positions} or more)")
    ids = torch.randint(4, model.config.vocab_size, (batch, context), generator=generator)
    ids = ids.to(device)  # (B, n)
    cache = new_cache(model, positions)
    _sync(device)
    start = time.perf_counter()
    next_ids = prefill(model, ids, cache, prefill_chunk).argmax(-1, keepdim=True)  # (B, 1)
    _sync(device)
    prefill_seconds = time.perf_counter() - start
    cache_bytes = int(cache.nbytes)
    next_ids = _step(model, next_ids, cache)  # warm-up step
    times = []
    for _ in range(new_tokens):
        _sync(device)
        start = time.perf_counter()
        next_ids = _step(model, next_ids, cache)
        _sync(device)
        times.append(time.perf_counter() - start)
    transient = _step_peak(model, next_ids, cache, device, PROFILED_STEPS)
    ms = 1000 * statistics.median(times)
    return {
        "context": context, "ms_per_token": ms, "cache_bytes": cache_bytes,
        "peak_bytes": cache_bytes + transient, "prefill_seconds": prefill_seconds,
        "transient_bytes": transient, "tokens_per_second": 1000 * batch / ms,
        "batch": batch, "new_tokens": new_tokens,
        "step_ms": [round(1000 * t, 4) for t in times],
    }


def measure_decoding(model: nn.Module, contexts: Sequence[int], *, new_tokens: int = 16,
                     batch: int = 1, seed: int = 0, prefill_chunk: int = 2048,
                     progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """One row per context length (see the module docstring for each figure): context,
    ms_per_token, cache_bytes, peak_bytes, prefill_seconds, plus transient_bytes (peak minus
    cache), tokens_per_second (batch rows per step), batch, new_tokens and step_ms (every
    timed step). The model is a CausalLM (`model(ids, cache=)`, `new_cache`) on any device;
    a Transformer's max_seq_len must cover context + new_tokens + 3 positions."""
    if not contexts:
        raise ConfigError("contexts must list at least one context length, got none")
    for n in contexts:
        _check_positive("contexts", n)
    for name, value in (("new_tokens", new_tokens), ("batch", batch),
                        ("prefill_chunk", prefill_chunk)):
        _check_positive(name, value)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    rows = []
    try:
        for n in contexts:
            if progress is not None:
                progress(f"context {n}")
            generator = torch.Generator().manual_seed(seed)
            rows.append(_measure_one(model, n, new_tokens=new_tokens, batch=batch,
                                     generator=generator, prefill_chunk=prefill_chunk,
                                     device=device))
    finally:
        model.train(was_training)
    return rows


@torch.inference_mode()
def use_fastest_form(model: nn.Module, tokens: int = 512, seed: int = 0) -> str | None:
    """Time a prefill of `tokens` random tokens in each form the model's sequence mixers share
    (after one warm-up each), set every mixer to the fastest and return its name; None for a
    model without mixers (a Transformer) or with one form only."""
    mixers = [m for m in model.modules() if isinstance(m, SequenceMixer)]
    forms = [f for f in mixers[0].forms if all(f in m.forms for m in mixers)] if mixers else []
    if len(forms) < 2:
        return None
    device = next(model.parameters()).device
    ids = torch.randint(4, model.config.vocab_size, (1, tokens),
                        generator=torch.Generator().manual_seed(seed)).to(device)
    was_training = model.training
    model.eval()
    seconds = {}
    for form in forms:
        for m in mixers:
            m.form = form
        prefill(model, ids[:, :16], model.new_cache(), tokens)  # warm-up
        _sync(device)
        start = time.perf_counter()
        prefill(model, ids, model.new_cache(), tokens)
        _sync(device)
        seconds[form] = time.perf_counter() - start
    model.train(was_training)
    best = min(seconds, key=seconds.__getitem__)
    for m in mixers:
        m.form = best
    return best


def crossover(rows_a: Sequence[dict[str, Any]], rows_b: Sequence[dict[str, Any]]) -> int | None:
    """The smallest context, among those both measured, where b's ms_per_token is below a's
    (None if b is never faster)."""
    a = {row["context"]: row["ms_per_token"] for row in rows_a}
    for row in sorted(rows_b, key=lambda r: r["context"]):
        n = row["context"]
        if n in a and row["ms_per_token"] < a[n]:
            return n
    return None
