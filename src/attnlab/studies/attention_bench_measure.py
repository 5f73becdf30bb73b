"""Time and peak memory of attention modules at one sequence length, for `attnlab bench
attention`, and the rules that stop a variant before the next length.

Timing: one warm-up call per module, then `repeats` rounds over all modules (round-robin, the
order reversed every other round), median kept. Memory: one more call under the allocator's
high-water mark (CPU: PyTorch profiler allocation events; CUDA: max_memory_allocated).
A module that raises (out of memory, a length its structure cannot take) is dropped at that
length with the error recorded; the others go on.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from attnlab.studies.attention_bench_error import build_module
from attnlab.studies.compare.throughput import peak_bytes

if TYPE_CHECKING:
    from attnlab.studies.attention_bench import AttentionBenchSettings, Entry

log = logging.getLogger(__name__)
R = TypeVar("R")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def forward_call(module: nn.Module, x: Tensor) -> None:
    """Inference: eval mode, no autograd graph."""
    module.eval()
    with torch.no_grad():
        module(x)


def train_call(module: nn.Module, x: Tensor, probe: Tensor) -> None:
    """Training: gradient of <output, probe> w.r.t. the input and every parameter."""
    module.train()
    module.zero_grad(set_to_none=True)
    x.grad = None
    (module(x).output * probe).sum().backward()


def timed_ms(fn: Callable[[], None], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return (time.perf_counter() - start) * 1e3


def peak_mib(fn: Callable[[], None], device: torch.device) -> float:
    """MiB allocated at the high-water mark of `fn` beyond what was allocated before it."""
    if device.type != "cuda":
        return peak_bytes(fn) / 2**20
    _sync(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    _sync(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


class LengthRun:
    """All active entries at one length T: build, warm up, time round-robin, measure memory.

    `failed(entry, reason)` is told about every entry that raised; it is dropped from this run.
    """

    def __init__(self, s: AttentionBenchSettings, T: int, entries: list[Entry],
                 failed: Callable[[Entry, str], None]) -> None:
        self.s, self.T, self.failed = s, T, failed
        self.device = torch.device(s.device)
        g = torch.Generator().manual_seed(s.seed + T)
        self.x = torch.randn(s.batch, T, s.d_model, generator=g).to(self.device)  # (B, T, D)
        self.x.requires_grad_(True)
        self.probe = torch.randn(s.batch, T, s.d_model, generator=g).to(self.device)  # (B, T, D)
        self.modules: dict[str, tuple[Entry, nn.Module]] = {}
        for entry in entries:
            module = self._attempt(entry, "build", lambda e=entry: build_module(
                e.name, e.extra, s, T, s.seed).to(self.device))
            if module is not None:
                self.modules[entry.label] = (entry, module)

    def _attempt(self, entry: Entry, stage: str, fn: Callable[[], R]) -> R | None:
        """fn()'s value, or None after recording why it raised (fn never returns None)."""
        try:
            return fn()
        except Exception as error:  # noqa: BLE001  (one failing variant must not end the run)
            log.warning("%s at T=%d (%s): %s", entry.label, self.T, stage, error)
            self.modules.pop(entry.label, None)
            self.failed(entry, f"{stage} raised {type(error).__name__}: {error}")
            return None

    def calls(self, module: nn.Module) -> dict[str, Callable[[], None]]:
        return {"forward_ms": lambda: forward_call(module, self.x),
                "train_ms": lambda: train_call(module, self.x, self.probe)}

    def _time_all(self, module: nn.Module) -> dict[str, float]:
        return {key: timed_ms(fn, self.device) for key, fn in self.calls(module).items()}

    def time(self, bar: tqdm) -> dict[str, dict[str, list[float]]]:
        """label -> {"forward_ms": [...], "train_ms": [...]} over the timed rounds."""
        samples: dict[str, dict[str, list[float]]] = {}
        rounds: dict[str, int] = {}
        for label, (entry, module) in list(self.modules.items()):
            bar.set_postfix_str(f"T={self.T} warm-up {label}")
            warm = self._attempt(entry, "warm-up", lambda m=module: self._time_all(m))
            if warm is not None:
                samples[label] = {key: [] for key in warm}
                # a step already over the budget is timed once more, not `repeats` times
                over = warm["train_ms"] > self.s.time_budget * 1e3
                rounds[label] = 1 if over else self.s.repeats
        for i in range(max(rounds.values(), default=0)):
            bar.set_postfix_str(f"T={self.T} round {i + 1}/{self.s.repeats}")
            order = list(self.modules.items())
            for label, (entry, module) in order if i % 2 == 0 else order[::-1]:
                if i >= rounds[label]:
                    continue
                got = self._attempt(entry, "timing", lambda m=module: self._time_all(m))
                if got is None:
                    samples.pop(label)
                    continue
                for key, ms in got.items():
                    samples[label][key].append(ms)
        return samples

    def memory(self, label: str) -> dict[str, float] | None:
        """{"forward_peak_mib", "train_peak_mib"} of one call each, or None if it raised."""
        entry, module = self.modules[label]
        return self._attempt(entry, "memory", lambda: {
            key.replace("_ms", "_peak_mib"): round(peak_mib(fn, self.device), 3)
            for key, fn in self.calls(module).items()})


def next_length(lengths: list[int], T: int) -> int | None:
    later = [n for n in lengths if n > T]
    return later[0] if later else None


def stop_reason(s: AttentionBenchSettings, history: dict[int, dict[str, Any]], T: int,
                next_T: int) -> str | None:
    """Why a variant measured up to T (`history`: T -> record) should not run at `next_T`:
    its fwd+bwd step took longer than the time budget, or its fwd+bwd peak extrapolated with
    the local growth exponent (at least 1; 2 from a single point) exceeds the memory cap."""
    record = history[T]
    if record["train_ms"] > s.time_budget * 1e3:
        return (f"a fwd+bwd step took {record['train_ms'] / 1e3:.3g} s at T={T}, over the "
                f"time budget of {s.time_budget:g} s")
    peaks = {n: r["train_peak_mib"] for n, r in history.items() if r["train_peak_mib"] > 0}
    if T not in peaks:
        return None
    earlier = [n for n in sorted(peaks) if n < T]
    b = 2.0 if not earlier else max(1.0, math.log(peaks[T] / peaks[earlier[-1]])
                                    / math.log(T / earlier[-1]))
    predicted_gib = peaks[T] * (next_T / T) ** b / 1024
    if predicted_gib > s.max_gib:
        return (f"fwd+bwd peak {peaks[T] / 1024:.2f} GiB at T={T} extrapolates (T^{b:.2f}) to "
                f"{predicted_gib:.1f} GiB at T={next_T}, over the cap of {s.max_gib:g} GiB")
    return None
