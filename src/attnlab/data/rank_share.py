"""Each rank's share of one global stream of micro-batches (data parallelism: every process
sees different data, together exactly what one process would see).

The batch sources of attnlab are one endless stream whose i-th batch is a pure function of
(seed, epoch, i). An optimizer step of `world_size` processes with `grad_accum` micro-batches
each consumes the next `world_size * grad_accum` batches of that stream: rank r takes those
numbered r * grad_accum ... r * grad_accum + grad_accum - 1 of the step's block and skips the
others. So N processes with --grad-accum A train on exactly the batches of one process with
--grad-accum N * A, in the same steps (their gradients are the same token-weighted mean), and
the stream's position after a step is the same on every rank: the checkpointed data position
resumes on any number of processes that keeps N * A.
"""

from __future__ import annotations

from typing import Any, Protocol


class Source(Protocol):
    def next(self) -> Any: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def skip(source: Source, count: int) -> None:
    """Advance `source` by `count` batches: its own `skip` where it has one (no batch built),
    else by drawing and dropping them."""
    if count <= 0:
        return
    fast = getattr(source, "skip", None)
    if fast is not None:
        fast(count)
        return
    for _ in range(count):
        source.next()


class RankShare:
    """Rank `rank` of `world_size`'s micro-batches of `source`, `grad_accum` per step."""

    def __init__(self, source: Source, rank: int, world_size: int, grad_accum: int) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        if grad_accum <= 0:
            raise ValueError(f"grad_accum must be positive, got {grad_accum}")
        self.source, self.rank, self.world_size = source, rank, world_size
        self.grad_accum = grad_accum
        self.taken = 0  # micro-batches of the current step taken so far

    def next(self) -> Any:
        if self.taken == 0:
            skip(self.source, self.rank * self.grad_accum)  # the lower ranks' share
        batch = self.source.next()
        self.taken += 1
        if self.taken == self.grad_accum:  # step done: move past the higher ranks' share
            skip(self.source, (self.world_size - 1 - self.rank) * self.grad_accum)
            self.taken = 0
        return batch

    def state_dict(self) -> dict[str, Any]:
        """The global stream's position, the same on every rank (taken at a step boundary)."""
        if self.taken:
            raise RuntimeError(f"RankShare.state_dict in the middle of a step ({self.taken} of "
                               f"{self.grad_accum} micro-batches taken)")
        return self.source.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.source.load_state_dict(state)
        self.taken = 0

    def __getattr__(self, name: str) -> Any:  # len(), epoch, ... of the underlying stream
        return getattr(self.source, name)
