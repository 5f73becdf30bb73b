"""What one request is inside the serving engine (serve/engine.py), seen from both sides: the
parameters it asks for (`SamplingParams`), what it gets back step by step (`Delta`, with
`TokenLogprob`s), the `RequestHandle` through which the event loop reads it and cancels it, and
the errors the engine answers with (each becomes one HTTP status in serve/completions.py).

The engine thread hands items to a request's asyncio queue with `deliver_all`: one
`call_soon_threadsafe` per event loop for every request served in one decoding step.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import torch

from attnlab.generation.detokenize import TextStream
from attnlab.generation.processors import check_settings


class QueueFull(Exception):
    """Every row is busy and the waiting line is full (HTTP 429 with Retry-After)."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PromptTooLong(Exception):
    """The prompt plus max_tokens do not fit the context (HTTP 400 naming the limit)."""

    def __init__(self, message: str, limit: int, param: str) -> None:
        super().__init__(message)
        self.limit, self.param = limit, param


class EngineClosed(Exception):
    """The engine is draining or stopped and admits nothing (HTTP 503)."""


class RequestTimeout(Exception):
    """The request ran past the engine's request_timeout (HTTP 408)."""


@dataclass(frozen=True)
class SamplingParams:
    """What one request asks of decoding (OpenAI's parameters; see the contract in
    serve/protocol.py for how they are checked)."""

    max_tokens: int
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    seed: int | None = None
    stop: tuple[str, ...] = ()
    logprobs: int | None = None  # None: none; k: each token's log-prob + the top k
    prompt_logprobs: bool = False
    ignore_eos: bool = False

    def __post_init__(self) -> None:
        """The rules `generate` applies (generation/processors.py), with temperature 0 for
        greedy; a ConfigError (a ValueError) names the first setting out of range."""
        if not self.temperature >= 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        check_settings(max_new_tokens=self.max_tokens, do_sample=self.temperature > 0,
                       temperature=self.temperature, top_k=self.top_k, top_p=self.top_p,
                       repetition_penalty=1.0)
        if self.logprobs is not None and self.logprobs < 0:
            raise ValueError(f"logprobs must be >= 0, got {self.logprobs}")


@dataclass(frozen=True)
class TokenLogprob:
    """A token, its log-probability under the model (its raw distribution) and the best
    alternatives (id, text, log-probability), best first."""

    token_id: int
    token: str
    logprob: float | None
    top: tuple[tuple[int, str, float], ...] = ()


@dataclass(frozen=True)
class Delta:
    """What one decoding step added to a request; the last one has a finish_reason ("stop":
    EOS or a stop string; "length": max_tokens)."""

    text: str
    token_ids: tuple[int, ...] = ()
    logprobs: tuple[TokenLogprob, ...] = ()
    finish_reason: str | None = None


@dataclass(frozen=True)
class EngineStats:
    queued: int
    running: int
    max_batch: int
    max_queue: int
    steps: int
    tokens_generated: int
    draining: bool


class RequestHandle:
    """One request inside the engine, seen from the event loop that submitted it."""

    def __init__(self, prompt_ids: list[int], params: SamplingParams, stream: TextStream,
                 loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.prompt_ids = prompt_ids
        self.params = params
        self.prompt_logprobs: list[TokenLogprob] | None = None
        self.output_ids: list[int] = []
        self.created = time.perf_counter()
        self.deadline = self.created + timeout
        self.first_token_at: float | None = None
        self.finished_at: float | None = None
        self.stream = stream
        self._loop = loop
        self._events: asyncio.Queue[Delta | Exception] = asyncio.Queue()
        self._cancelled = threading.Event()
        self._done = False  # the last Delta (or an error) was handed out
        self.generator: torch.Generator | None = None
        self.processor = None

    # -- the event loop's side --
    async def deltas(self) -> AsyncIterator[Delta]:
        """The request's Deltas in order, ending after the one with a finish_reason."""
        while not self._done:
            yield self._take(await self._events.get())

    def drain_ready(self) -> list[Delta]:
        """Deltas already waiting (never blocks): lets a stream send them as one chunk."""
        ready = []
        while not self._done and not self._events.empty():
            ready.append(self._take(self._events.get_nowait()))
        return ready

    def _take(self, item: Delta | Exception) -> Delta:
        if isinstance(item, Exception):
            self._done = True
            raise item
        if item.finish_reason is not None:
            self._done = True
        return item

    def cancel(self) -> None:
        """The client went away: the engine frees the row at its next step."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    # -- the engine thread's side --
    def deliver(self, item: Delta | Exception) -> None:
        deliver_all([(self, item)])


def deliver_all(items: list[tuple[RequestHandle, Delta | Exception]]) -> None:
    """Hand each request its item, with one wake-up of each event loop for the lot (a step
    of 32 rows is one call, not 32)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[RequestHandle, Delta | Exception]]] = {}
    for handle, item in items:
        by_loop.setdefault(handle._loop, []).append((handle, item))
    for loop, batch in by_loop.items():
        try:
            loop.call_soon_threadsafe(_put_all, batch)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            for handle, _ in batch:
                handle._cancelled.set()


def _put_all(items: list[tuple[RequestHandle, Delta | Exception]]) -> None:
    for handle, item in items:
        handle._events.put_nowait(item)


__all__ = ["Delta", "EngineClosed", "EngineStats", "PromptTooLong", "QueueFull", "RequestHandle",
           "RequestTimeout", "SamplingParams", "TokenLogprob", "deliver_all"]
