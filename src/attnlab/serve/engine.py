"""The serving engine: one thread that owns the model and decodes every request, admitting new
ones between decoding steps into free rows of a continuous batch (`generation/continuous.py`),
so a request never waits for another to finish.

The HTTP layer (an asyncio event loop) talks to it through `submit` and a `RequestHandle` per
request: the engine thread hands each new token to the request's asyncio queue
(`call_soon_threadsafe`) as a `Delta` (the text it made certain, its token ids, their
log-probabilities when asked, and at the end a finish reason). Text comes out of a
`TextStream` per request, so a streamed response never splits a character nor shows part of a
stop string.

Limits: `max_batch` sequences decode at once; up to `max_queue` more wait for a row (then
`QueueFull`, an HTTP 429); a prompt plus its max_tokens must fit `max_model_len` (`PromptTooLong`,
a 400); a request past `request_timeout` seconds ends with `RequestTimeout`; a cancelled request
(its client went away) leaves its row at the next step. `stop` stops admitting and lets the
running and queued requests finish within a bound.

Each request's sampling is its own: greedy (temperature 0) takes the argmax of its row of the
logits, sampling runs the shared logits processors (`generation/processors.py`: temperature,
top-k, top-p) on its row and draws from its own seeded generator, so a request's tokens do not
depend on the requests beside it.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from attnlab.generation.continuous import ContinuousBatch, SequentialStates
from attnlab.generation.detokenize import TextStream
from attnlab.generation.mixin import DECODER_ONLY, GENERATING_KINDS, model_kind
from attnlab.generation.processors import logits_processor
from attnlab.generation.prompts import source_ids
from attnlab.serve.requests import (
    Delta,
    EngineClosed,
    EngineStats,
    PromptTooLong,
    QueueFull,
    RequestHandle,
    RequestTimeout,
    SamplingParams,
    TokenLogprob,
    deliver_all,
)
from attnlab.tokenizers import Tokenizer

log = logging.getLogger(__name__)


class Engine:
    """Decodes every request of a generating model on one thread (see the module docstring)."""

    def __init__(self, model: nn.Module, tokenizer: Tokenizer, *, max_batch: int = 32,
                 max_queue: int = 64, max_model_len: int | None = None,
                 request_timeout: float = 600.0,
                 on_step: Callable[[int], None] | None = None) -> None:
        self.kind = model_kind(model)
        if self.kind not in GENERATING_KINDS:
            raise ValueError(f"{type(model).__name__} is an {self.kind} model: it generates "
                             "nothing to serve completions with")
        limit = model.config.max_seq_len
        self.max_model_len = limit if max_model_len is None else max_model_len
        if not 1 < self.max_model_len <= limit:
            raise ValueError(f"max_model_len must be in [2, max_seq_len={limit}], got "
                             f"{self.max_model_len}")
        if max_batch < 1 or max_queue < 0 or not request_timeout > 0:
            raise ValueError(f"max_batch >= 1, max_queue >= 0 and request_timeout > 0 are "
                             f"needed, got {max_batch}, {max_queue}, {request_timeout}")
        self.model, self.tokenizer = model.eval(), tokenizer
        self.max_batch, self.max_queue = max_batch, max_queue
        self.request_timeout = request_timeout
        self.on_step = on_step
        self.eos = model.config.eos_token_id
        self.vocab_size = model.config.vocab_size
        self._queue: collections.deque[RequestHandle] = collections.deque()
        self._running: list[RequestHandle] = []  # row i of the batch is _running[i]
        self._pending: list[int] = []  # the token each running row is fed next
        self._wake = threading.Condition()
        self._draining = False
        self._stop_at = float("inf")
        self._thread: threading.Thread | None = None
        self._steps = 0
        self._tokens = 0
        self._outbox: list[tuple[RequestHandle, Delta | Exception]] = []  # sent after a step
        self._step_seconds = 0.05  # running mean of a step: the Retry-After estimate
        self._batch = self._new_batch()

    def _new_batch(self) -> ContinuousBatch | SequentialStates:
        kind = ContinuousBatch if self.kind == DECODER_ONLY else SequentialStates
        return kind(self.model, max_rows=self.max_batch, max_length=self.max_model_len)

    # -- called from the event loop --
    def encode(self, text: str, *, special_tokens: bool = True) -> list[int]:
        """Prompt text -> ids as the family reads them: decoder-only through the tokenizer's
        own framing (LLaMA's <s>; `special_tokens=False` leaves it to a chat template),
        encoder-decoder as a source ending with EOS."""
        if self.kind != DECODER_ONLY:
            return source_ids(self.tokenizer, text, self.model.config)
        if special_tokens:
            return self.tokenizer.encoding(text).ids
        return self.tokenizer.encode(text)

    def submit(self, prompt_ids: list[int], params: SamplingParams) -> RequestHandle:
        """Queue a request (call from the event loop); raises on what cannot be served."""
        self._check(prompt_ids, params)
        handle = RequestHandle(list(prompt_ids), params,
                               TextStream(self.tokenizer, prompt_ids if self.kind == DECODER_ONLY
                                          else (), params.stop),
                               asyncio.get_running_loop(), self.request_timeout)
        if params.temperature > 0:
            handle.processor = logits_processor(do_sample=True, temperature=params.temperature,
                                                top_k=params.top_k, top_p=params.top_p)
            if params.seed is not None:
                device = next(self.model.parameters()).device
                handle.generator = torch.Generator(device=device).manual_seed(params.seed)
        with self._wake:
            if self._draining:
                raise EngineClosed("the server is shutting down and admits no new requests")
            free = self.max_batch - len(self._running)
            if len(self._queue) >= self.max_queue + max(0, free):
                retry = max(1.0, round(self._step_seconds * params.max_tokens, 1))
                raise QueueFull(f"the server is at capacity ({self.max_batch} running, "
                                f"{self.max_queue} waiting); retry after {retry:g} s", retry)
            self._queue.append(handle)
            self._wake.notify()
        return handle

    def _check(self, prompt_ids: list[int], params: SamplingParams) -> None:
        if not prompt_ids:
            raise ValueError("the prompt is empty: give at least one token")
        if any(not 0 <= i < self.vocab_size for i in prompt_ids):
            raise ValueError(f"prompt token ids must be in [0, {self.vocab_size})")
        T, limit = len(prompt_ids), self.max_model_len
        if self.kind == DECODER_ONLY:
            if T >= limit:
                raise PromptTooLong(f"the prompt has {T} tokens; the model's context is {limit} "
                                    f"(max_model_len), which leaves no room to generate",
                                    limit, "prompt")
            if T + params.max_tokens > limit:
                raise PromptTooLong(f"the prompt ({T} tokens) + max_tokens "
                                    f"({params.max_tokens}) = {T + params.max_tokens} exceeds "
                                    f"max_model_len={limit}; lower max_tokens to at most "
                                    f"{limit - T}", limit, "max_tokens")
            return
        if T > limit:
            raise PromptTooLong(f"the prompt has {T} tokens, more than the encoder's "
                                f"max_model_len={limit}", limit, "prompt")
        if params.max_tokens > limit - 1:
            raise PromptTooLong(f"max_tokens ({params.max_tokens}) exceeds the decoder's "
                                f"{limit - 1} positions (max_model_len - 1)", limit - 1,
                                "max_tokens")
        if params.prompt_logprobs:
            raise ValueError("prompt log-probabilities (echo with logprobs) are for "
                             "decoder-only models")

    def stats(self) -> EngineStats:
        return EngineStats(len(self._queue), len(self._running), self.max_batch, self.max_queue,
                           self._steps, self._tokens, self._draining)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="attnlab-engine",
                                            daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop admitting; let queued and running requests finish for up to `timeout`
        seconds, then end those left with EngineClosed and join the thread."""
        with self._wake:
            self._draining = True
            self._stop_at = time.perf_counter() + timeout
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout + 10)
            self._thread = None

    # -- the engine thread --
    @torch.no_grad()
    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._running and not self._draining:
                    self._wake.wait()
                if self._draining and (not self._queue and not self._running
                                       or time.perf_counter() > self._stop_at):
                    break
                admitted = []
                while self._queue and len(self._running) + len(admitted) < self.max_batch:
                    admitted.append(self._queue.popleft())
            for handle in admitted:
                try:
                    self._admit(handle)
                except Exception as error:  # a bug, not bad input (submit checked that)
                    log.exception("prefill failed")
                    handle.deliver(RuntimeError(f"prefill failed: {error}"))
            try:
                self._retire()  # also a request that finished at its first token
                if self._running:
                    self._step()
            except Exception as error:  # a bug, not bad input: fail what runs, keep serving
                log.exception("decoding step failed; the running requests end with an error")
                for handle in self._running:
                    handle.deliver(RuntimeError(f"decoding failed: {error}"))
                self._running, self._pending, self._outbox = [], [], []
                self._batch = self._new_batch()
        closed = EngineClosed("the server stopped before this request finished")
        for handle in [*self._running, *self._queue]:
            handle.deliver(closed)
        self._running, self._pending = [], []
        self._queue.clear()

    def _admit(self, handle: RequestHandle) -> None:
        if handle.cancelled:
            return
        if time.perf_counter() > handle.deadline:
            handle.deliver(RequestTimeout("the request timed out before it started"))
            return
        batch = self._batch
        if isinstance(batch, ContinuousBatch):
            logits = batch.add(handle.prompt_ids)  # (T, V)
            if handle.params.prompt_logprobs:
                handle.prompt_logprobs = self._prompt_logprobs(handle, logits)
            logits = logits[-1:]
        else:
            logits = batch.add(handle.prompt_ids, handle.params.max_tokens)  # (1, V)
        self._running.append(handle)
        self._pending.append(0)
        self._emit(len(self._running) - 1, logits[0])
        self._send()

    def _step(self) -> None:
        started = time.perf_counter()
        ids = torch.tensor(self._pending)
        logits = self._batch.step(ids)  # (rows, V)
        greedy = logits.argmax(-1).tolist()
        for row in range(len(self._running)):
            self._emit(row, logits[row], greedy[row])
        self._send()
        self._steps += 1
        seconds = time.perf_counter() - started
        self._step_seconds = 0.9 * self._step_seconds + 0.1 * seconds
        if self.on_step is not None:
            self.on_step(len(self._running))
        self._retire()  # finished rows free their slots before the next admission

    def _emit(self, row: int, logits: Tensor, greedy: int | None = None) -> None:
        """Draw row `row`'s next token from its logits (V,) and hand the request its Delta."""
        handle = self._running[row]
        params = handle.params
        if handle.processor is None:
            token = int(logits.argmax()) if greedy is None else greedy
        else:
            scores = handle.processor(logits[None], logits.new_empty(1, 0, dtype=torch.long))
            token = int(torch.multinomial(scores.softmax(-1), 1, generator=handle.generator))
        self._tokens += 1
        if handle.first_token_at is None:
            handle.first_token_at = time.perf_counter()
        finish = None
        if token == self.eos and not params.ignore_eos:
            text, ids, finish = "", (), "stop"
        else:
            handle.output_ids.append(token)
            text, ids = handle.stream.push(token), (token,)
            if handle.stream.stopped:
                finish = "stop"
        if finish is None and len(handle.output_ids) >= params.max_tokens:
            finish = "length"
        if finish is not None:
            text += handle.stream.flush()  # "" after a stop string
        logprobs = ()
        if params.logprobs is not None and ids:
            logprobs = (self._logprob(logits, token, params.logprobs),)
        self._pending[row] = token
        if finish is not None:
            handle.finished_at = time.perf_counter()
        self._outbox.append((handle, Delta(text, ids, logprobs, finish)))

    def _send(self) -> None:
        deliver_all(self._outbox)
        self._outbox = []

    def _logprob(self, logits: Tensor, token: int, k: int) -> TokenLogprob:
        logp = logits.float().log_softmax(-1)  # (V,)
        top = ()
        if k:
            values, ids = logp.topk(min(k, logp.numel()))
            top = tuple((int(i), self.tokenizer.decode([int(i)]), float(v))
                        for v, i in zip(values, ids, strict=True))
        return TokenLogprob(token, self.tokenizer.decode([token]), float(logp[token]), top)

    def _prompt_logprobs(self, handle: RequestHandle, logits: Tensor) -> list[TokenLogprob]:
        """Each prompt token's log-probability given the tokens before it (None for the
        first), with the top alternatives when asked."""
        k = handle.params.logprobs or 0
        ids = handle.prompt_ids
        first = TokenLogprob(ids[0], self.tokenizer.decode([ids[0]]), None)
        return [first, *(self._logprob(logits[t - 1], ids[t], k) for t in range(1, len(ids)))]

    def _retire(self) -> None:
        """Rows that finished, were cancelled or ran past their deadline leave the batch;
        queued requests abandoned or past their deadline leave the queue."""
        now = time.perf_counter()
        for row in reversed(range(len(self._running))):
            handle = self._running[row]
            if handle.finished_at is not None or handle.cancelled:
                self._remove(row)
            elif now > handle.deadline:
                handle.deliver(RequestTimeout(
                    f"the request ran past the server's request_timeout of "
                    f"{self.request_timeout:g} s"))
                self._remove(row)
        with self._wake:  # queued requests past their deadline or abandoned
            for handle in list(self._queue):
                if handle.cancelled or now > handle.deadline:
                    self._queue.remove(handle)
                    if not handle.cancelled:
                        handle.deliver(RequestTimeout("the request timed out while queued"))

    def _remove(self, row: int) -> None:
        self._batch.remove(row)
        self._running[row] = self._running[-1]
        self._running.pop()
        self._pending[row] = self._pending[-1]
        self._pending.pop()


__all__ = ["Engine"]
