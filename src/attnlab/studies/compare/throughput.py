"""Training cost against sequence length: tokens per second of a forward + backward step and
the allocator's peak memory during it, for each architecture, at a fixed token count per batch.
Encoder-decoders get a source and a target of the length (both counted); decoder-only language
models (`decoder_only=True`) one window, called as the LM task trains them
(`model(input_ids, labels=input_ids)`, no padding mask).

Timing runs the architectures round-robin (a slow moment of a shared machine hits them all)
and keeps the median. Peak memory is read from the PyTorch profiler's allocation events: the
high-water mark of bytes allocated by the step (activations, gradients, workspaces; weights
already held are not counted), on CPU as on GPU.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile


def random_batch(vocab_size: int, batch: int, length: int, seed: int = 0, *,
                 decoder_only: bool = False) -> dict[str, Any]:
    """Source and target ids (B, L) of real tokens (ids 4.. avoid the special tokens); with
    `decoder_only`, one window (B, L) that is its own labels."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, vocab_size, (batch, length), generator=g)
    if decoder_only:
        return {"input_ids": ids, "labels": ids}
    labels = torch.randint(4, vocab_size, (batch, length), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def train_step(model: nn.Module, batch: dict[str, Any]) -> None:
    model.zero_grad(set_to_none=True)
    model(**batch).loss.backward()


@contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2: the profiler's C++ side prints start/stop lines there."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_bytes(fn: Callable[[], None]) -> int:
    """High-water mark of bytes allocated while `fn` runs (profiler memory events)."""
    with quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    current = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        current += event.self_cpu_memory_usage
        peak = max(peak, current)
    return peak


def measure(models: dict[str, nn.Module], vocab_size: int, lengths: list[int], *,
            tokens_per_batch: int = 2048, repeats: int = 3,
            progress: Callable[[str], None] | None = None,
            decoder_only: bool = False) -> list[dict[str, Any]]:
    """One record per (architecture, length): tokens/s (median) and peak MiB of a step."""
    records = []
    for length in lengths:
        batch_size = max(1, tokens_per_batch // length)
        batch = random_batch(vocab_size, batch_size, length, decoder_only=decoder_only)
        # positions processed: source + target, or the decoder-only window
        tokens = batch_size * length * (1 if decoder_only else 2)
        for model in models.values():
            model.train()
            train_step(model, batch)  # warm-up: allocator, kernel selection
        times: dict[str, list[float]] = {name: [] for name in models}
        for _ in range(repeats):
            for name, model in models.items():
                start = time.perf_counter()
                train_step(model, batch)
                times[name].append(time.perf_counter() - start)
        for name, model in models.items():
            if progress:
                progress(f"{name} L={length}")
            seconds = statistics.median(times[name])
            records.append({
                "model": name, "length": length, "batch": batch_size,
                "tokens_per_second": tokens / seconds, "step_seconds": seconds,
                "peak_mib": peak_bytes(lambda m=model, b=batch: train_step(m, b)) / 2**20,
            })
            model.zero_grad(set_to_none=True)
    return records
