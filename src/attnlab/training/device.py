"""Where a run computes: the device ("auto" -> a GPU when one is visible) and how many CPU
threads torch may use (never more than the cores this process may run on, unless the user asks
with `attnlab --threads N`), with a warning when the machine is already busy.

Why threads matter so much here: torch's intra-op threads spin-wait for each other at every op,
so on a 2-core machine where another job holds a core, one gpt2-tiny step took 1.86 s with 2
threads and 0.08-0.14 s with 1 (the new-user trial of issue 16).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from attnlab.training.settings import SettingError


def resolve_device(device: str) -> torch.device:
    """"auto" -> cuda when a GPU is visible, else cpu; anything else as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise SettingError("device", f"device must be auto, cpu, cuda or cuda:N, "
                                     f"got {device!r}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise SettingError("device", f"device {device!r} requested but torch sees no CUDA GPU")
    if resolved.type not in ("cpu", "cuda"):
        raise SettingError("device", f"device must be auto, cpu, cuda or cuda:N, got {device!r}")
    return resolved


def available_cores() -> int:
    """CPUs this process may run on (its affinity mask: a container's or taskset's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


# The count given with `attnlab --threads N` while its command runs (None: no explicit choice).
_explicit_threads: int | None = None


def cap_torch_threads() -> int:
    """Lower torch's intra-op threads to the cores this process may use, so compute never
    oversubscribes a shared or restricted machine. A user's OMP_NUM_THREADS is kept as it is,
    a lower torch.set_num_threads of theirs too (this only ever lowers), and so is an explicit
    `--threads N` (`use_threads`), even above the core count. Returns the count."""
    if _explicit_threads is not None:
        return torch.get_num_threads()
    threads = default_threads()
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    return threads


def default_threads() -> int:
    """The threads a command uses without --threads: torch's own count (OMP_NUM_THREADS when
    set, else torch's default) capped at the CPUs this process may use."""
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    return min(torch.get_num_threads(), available_cores())


@contextmanager
def use_threads(threads: int | None) -> Iterator[int]:
    """torch's intra-op threads for one command: `threads` when given (kept even by
    `cap_torch_threads`), else `default_threads()`; the previous count is restored on exit, so
    a command run in-process (tests, notebooks) leaves torch as it found it. Yields the count."""
    global _explicit_threads
    before, explicit_before = torch.get_num_threads(), _explicit_threads
    try:
        if threads is not None:
            if threads < 1:
                raise SettingError("threads", f"--threads must be a positive integer, "
                                              f"got {threads}")
            torch.set_num_threads(threads)
            _explicit_threads = threads
        yield cap_torch_threads()
    finally:
        _explicit_threads = explicit_before
        torch.set_num_threads(before)


# Warn when the threads wanted exceed the machine's free CPUs by more than this many CPUs (the
# load average moves by fractions of a CPU even on an idle machine).
OVERSUBSCRIPTION_MARGIN = 0.5


def warn_if_oversubscribed(threads: int) -> str | None:
    """Log one warning (and return it) when the 1-minute load average says the machine's other
    work leaves fewer free CPUs than `threads`: the case where torch's threads wait for each
    other and steps get many times slower. None when the machine looks free enough, or when
    the OS gives no load average (Windows).

    The load average counts runnable work of the whole machine, so it is compared with every
    CPU the machine has (os.cpu_count), not only this process's share; measured before the
    command computes, it is the other jobs' load."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
    cpus = os.cpu_count() or 1
    free = max(cpus - load, 0.0)
    if threads <= free + OVERSUBSCRIPTION_MARGIN:
        return None
    suggestion = max(1, min(int(free), threads - 1))
    message = (f"the machine is busy: 1-minute load average {load:.2f} on {cpus} CPUs leaves "
               f"~{free:.1f} free, and torch will use {threads} threads; threads that wait "
               f"for each other can make each step many times slower: try "
               f"`attnlab --threads {suggestion} ...`")
    logging.getLogger(__name__).warning(message)
    return message
