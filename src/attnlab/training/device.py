"""Where a run computes: the device ("auto" -> a GPU when one is visible) and how many CPU
threads torch may use (never more than the cores this process may run on)."""

from __future__ import annotations

import os

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


def cap_torch_threads() -> int:
    """Lower torch's intra-op threads to the cores this process may use, so compute never
    oversubscribes a shared or restricted machine. A user's OMP_NUM_THREADS is kept as it is,
    and a lower torch.set_num_threads of theirs too (this only ever lowers). Returns the count."""
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    threads = min(torch.get_num_threads(), available_cores())
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    return threads
