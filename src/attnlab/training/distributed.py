"""The processes of one run, as PyTorch's launcher starts them (`torchrun`, i.e.
`torch.distributed.run`): which rank this process is, how many there are, and the few
collectives the run routine needs, each under a timeout that a failure names.

`torchrun --nproc_per_node N [--nnodes M --rdzv-backend c10d --rdzv-endpoint HOST:PORT] -m
attnlab train ...` sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT in each
process's environment; `process_group` reads them and joins the group (gloo on CPU, nccl on
CUDA). A plain `attnlab train ...` is one process: `Ranks()` with rank 0 of 1, and every
collective here is then a no-op, so the run routine has one code path.

A collective that waits longer than the timeout (a rank died or hangs) raises
`CollectiveTimeout`, which names the timeout and the collective, instead of hanging the job.
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 1800.0  # long enough for a validation that only rank 0 runs


class CollectiveTimeout(RuntimeError):
    """A collective did not complete: another rank failed, was killed or hangs."""


def launched_world_size() -> int:
    """The number of processes torchrun started (1 without torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def launched_rank() -> int:
    """This process's global rank as torchrun set it (0 without torchrun)."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


@dataclass(frozen=True)
class Ranks:
    """This process's place in the run: rank of world_size (local_rank on its node)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def is_main(self) -> bool:
        """Rank 0: the only one that writes logs, progress bars, plots, metrics and files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def _wrap(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RuntimeError as error:
            text = str(error)
            if "timed out" in text.lower() or "timeout" in text.lower():
                raise CollectiveTimeout(
                    f"rank {self.rank}: {what} waited more than the collective timeout "
                    f"({self.timeout_s:g} s, --collective-timeout): another rank failed or "
                    f"hangs ({text.splitlines()[0]})") from None
            raise CollectiveTimeout(f"rank {self.rank}: {what} failed: another rank has "
                                    f"probably exited ({text.splitlines()[0]})") from None

    def barrier(self, what: str = "barrier") -> None:
        if self.distributed:
            self._wrap(what, dist.monitored_barrier if dist.get_backend() == "gloo"
                       else dist.barrier, **({"timeout": timedelta(seconds=self.timeout_s)}
                                             if dist.get_backend() == "gloo" else {}))

    def broadcast(self, value: Any, what: str = "broadcast") -> Any:
        """Rank 0's `value` on every rank (any picklable value of our own making)."""
        if not self.distributed:
            return value
        box = [value if self.is_main else None]
        self._wrap(what, dist.broadcast_object_list, box, src=0)
        return box[0]

    def sum(self, values: Sequence[float], device: torch.device | None = None,
            what: str = "all-reduce") -> list[float]:
        """The element-wise sum of `values` over all ranks (float64, so token counts stay
        exact)."""
        if not self.distributed:
            return [float(v) for v in values]
        if device is None and dist.get_backend() == "nccl":
            device = torch.device("cuda", torch.cuda.current_device())
        tensor = torch.tensor(list(values), dtype=torch.float64, device=device)
        self._wrap(what, dist.all_reduce, tensor, op=dist.ReduceOp.SUM)
        return tensor.tolist()


def rank_prefix() -> str:
    """"[rank R] " under torchrun with more than one process, else "" (for error lines)."""
    return f"[rank {launched_rank()}] " if launched_world_size() > 1 else ""


def place_device(device: torch.device) -> torch.device:
    """Under torchrun each process takes the GPU of its LOCAL_RANK ("cuda" -> "cuda:L")."""
    if device.type == "cuda" and device.index is None and launched_world_size() > 1:
        index = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    return device


@contextmanager
def process_group(device: torch.device, timeout_s: float = DEFAULT_TIMEOUT_S) -> Iterator[Ranks]:
    """Join the process group torchrun describes (gloo on CPU, nccl on CUDA) for the duration
    of a run and leave it after; one process without torchrun yields `Ranks()`. A group that
    is already initialised (by the caller) is used and left as it is."""
    world = launched_world_size()
    if world <= 1:
        yield Ranks(timeout_s=timeout_s)
        return
    owned = not dist.is_initialized()
    if owned:
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
        log.debug("joined the %s process group as rank %d of %d", backend, dist.get_rank(),
                  dist.get_world_size())
    ranks = Ranks(dist.get_rank(), dist.get_world_size(),
                  int(os.environ.get("LOCAL_RANK", "0")), timeout_s)
    try:
        yield ranks
        if owned:  # every rank done with every collective before any leaves the group
            try:
                dist.barrier()
            except RuntimeError as error:  # a peer already gone (a timed-out collective)
                log.debug("closing barrier: %s; leaving the group anyway", error)
    finally:
        if owned and dist.is_initialized():
            # Collect what still holds gloo work or tensors now, while the interpreter is
            # whole: freed at its finalisation they abort the process (SIGABRT, "terminate
            # called without an active exception"; pytorch/pytorch#179291 describes the cause).
            gc.collect()
            dist.destroy_process_group()
