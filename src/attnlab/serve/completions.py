"""POST /v1/completions and POST /v1/chat/completions (OpenAI's API reference): a request is
checked (`serve.protocol`), turned into prompt ids and `SamplingParams`, submitted to the engine,
and answered whole or streamed as server-sent events.

Streaming sends one `data: {json}` chunk per group of deltas ready at once (under load several
tokens come per chunk), `data: [DONE]` last; with stream_options.include_usage one more chunk,
with empty choices and the usage, comes before [DONE]. An error after the stream has begun
(the request timed out, the server stopped) is an error event, then [DONE].

A client that goes away cancels its request, so the engine frees its row at the next step:
a stream notices at once (its generator is cancelled), a waiting non-streamed request polls
`request.is_disconnected()`. Each finished completion is kept in `state.recent` (the
playground's attention view reads it) and counted in `state.metrics`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from attnlab.generation.mixin import DECODER_ONLY
from attnlab.serve import responses as shapes
from attnlab.serve.chat import render_chat, template_tokens
from attnlab.serve.errors import ApiError, internal_error, model_not_found
from attnlab.serve.protocol import ChatCompletionRequest, CompletionRequest, SamplingRequest
from attnlab.serve.requests import (
    Delta,
    EngineClosed,
    PromptTooLong,
    QueueFull,
    RequestHandle,
    RequestTimeout,
    SamplingParams,
)
from attnlab.serve.state import ServerState, server_state

log = logging.getLogger("attnlab.serve")
router = APIRouter()
COMPLETIONS, CHAT = "/v1/completions", "/v1/chat/completions"
DISCONNECT_POLL_S = 0.2  # how often a waiting non-streamed request checks its client
CLIENT_CLOSED = 499  # the status metrics count a request whose client went away with (nginx's)


class ClientDisconnected(Exception):
    pass


@dataclass
class Job:
    """One submitted request and how to answer it."""

    state: ServerState
    request: Request
    endpoint: str
    handle: RequestHandle
    completion_id: str
    echo: str = ""  # completions with echo: the prompt text put before the completion
    include_usage: bool = False
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def chat(self) -> bool:
        return self.endpoint == CHAT

    def done(self, status: int) -> None:
        """Count the request once in the metrics (and mark it counted for the middleware)."""
        handle = self.handle
        end = handle.finished_at or time.perf_counter()
        first, produced = handle.first_token_at, len(handle.output_ids)
        self.state.metrics.request_done(
            self.endpoint, status, prompt_tokens=len(handle.prompt_ids),
            completion_tokens=produced, latency_s=end - handle.created,
            ttft_s=None if first is None else first - handle.created,
            tpot_s=(end - first) / (produced - 1) if first is not None and produced > 1 else None)
        self.request.state.metrics_recorded = True
        if status == 200:
            self.remember()

    def body(self, choice: dict[str, Any] | None, usage: dict[str, int] | None = None, *,
             chunk: bool = False) -> dict[str, Any]:
        """This request's response (or chunk) around `choice`."""
        return shapes.response_body(self.chat, self.completion_id, self.created,
                                    self.state.model_id, choice, usage, chunk)

    def remember(self) -> None:
        """Keep the finished completion's tokens for GET /v1/attention/{id}."""
        self.state.recent.add(self.completion_id, list(self.handle.prompt_ids),
                              list(self.handle.output_ids))


def ready_engine(state: ServerState, body: SamplingRequest):
    """The engine, once the request names the served model and this model completes text."""
    if body.model is not None and body.model != state.model_id:
        raise model_not_found(body.model)
    if state.engine is None:
        raise ApiError(400, f"the model `{state.model_id}` is an {state.kind} model "
                            f"({type(state.model).__name__}): it cannot complete text; use "
                            f"POST /v1/embeddings", param="model")
    body.check(state.settings.max_logprobs)
    return state.engine


def submit(state: ServerState, prompt_ids: list[int], values: dict[str, Any]) -> RequestHandle:
    """Hand the request to the engine; its refusals become the HTTP errors clients expect."""
    try:
        return state.engine.submit(prompt_ids, SamplingParams(**values))
    except QueueFull as error:
        raise ApiError(429, str(error), headers={
            "Retry-After": str(max(1, math.ceil(error.retry_after)))}) from None
    except PromptTooLong as error:
        raise ApiError(400, str(error), param=error.param,
                       code="context_length_exceeded") from None
    except EngineClosed as error:
        raise ApiError(503, str(error), headers={"Retry-After": "5"}) from None
    except ValueError as error:  # an empty prompt, ids outside the vocabulary
        raise ApiError(400, str(error), param="prompt") from None


def running_error(error: Exception) -> ApiError:
    """An error the engine hands a running request, as the client should see it."""
    if isinstance(error, RequestTimeout):
        return ApiError(408, str(error))
    if isinstance(error, EngineClosed):
        return ApiError(503, str(error))
    log.error("request failed in the engine: %s", error, exc_info=error)
    return internal_error()


@router.post(COMPLETIONS)
async def create_completion(body: CompletionRequest, request: Request) -> Response:
    state = server_state(request)
    engine = ready_engine(state, body)
    if isinstance(body.prompt, str):
        prompt_ids, prompt_text = engine.encode(body.prompt), body.prompt
    else:
        prompt_ids = list(body.prompt)
        prompt_text = state.tokenizer.backend.decode(prompt_ids, skip_special_tokens=False) \
            if body.echo else ""
    values = body.sampling(body.max_tokens or 16, body.logprobs,
                           prompt_logprobs=body.echo and body.logprobs is not None)
    handle = submit(state, prompt_ids, values)
    job = Job(state, request, COMPLETIONS, handle, "cmpl-" + uuid.uuid4().hex,
              echo=prompt_text if body.echo else "", include_usage=body.include_usage())
    return await answer(job, body.stream)


@router.post(CHAT)
async def create_chat_completion(body: ChatCompletionRequest, request: Request) -> Response:
    state = server_state(request)
    engine = ready_engine(state, body)
    text = render_chat(body.messages, state.chat_template, **template_tokens(state.tokenizer))
    # A template writes its own BOS; the plain default leaves the framing to the tokenizer.
    prompt_ids = engine.encode(text, special_tokens=state.chat_template is None)
    room = state.max_model_len - (len(prompt_ids) if state.kind == DECODER_ONLY else 1)
    max_tokens = body.completion_limit() or max(1, room)
    handle = submit(state, prompt_ids, body.sampling(max_tokens, body.top_k_logprobs()))
    job = Job(state, request, CHAT, handle, "chatcmpl-" + uuid.uuid4().hex,
              include_usage=body.include_usage())
    return await answer(job, body.stream)


async def answer(job: Job, stream: bool) -> Response:
    if stream:
        return StreamingResponse(stream_events(job), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})
    try:
        deltas = await collect(job)
    except ClientDisconnected:
        job.done(CLIENT_CLOSED)
        return Response(status_code=CLIENT_CLOSED)
    except Exception as error:
        api_error = running_error(error)
        job.done(api_error.status)
        raise api_error from None
    group = shapes.Group.of(deltas)
    usage = shapes.usage(len(job.handle.prompt_ids), len(job.handle.output_ids))
    logprobs = None
    if job.chat:
        if job.handle.params.logprobs is not None:
            logprobs = shapes.chat_logprobs(job.state.tokenizer, group.logprobs)
        body = job.body(shapes.chat_choice(group.text, logprobs, group.finish_reason,
                                           chunk=False), usage)
    else:
        if job.handle.params.logprobs is not None:
            logprobs = shapes.CompletionLogprobs().shape(
                [*(job.handle.prompt_logprobs or ()), *group.logprobs])
        body = job.body(shapes.completion_choice(job.echo + group.text, logprobs,
                                                 group.finish_reason), usage)
    job.done(200)
    return JSONResponse(body)


async def collect(job: Job) -> list[Delta]:
    """Every delta of the request, watching the client: gone, the request is cancelled."""
    deltas: list[Delta] = []

    async def consume() -> None:
        async for delta in job.handle.deltas():
            deltas.append(delta)

    task = asyncio.create_task(consume())
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
            if not task.done() and await job.request.is_disconnected():
                raise ClientDisconnected
        task.result()  # the engine's error, if it sent one
        return deltas
    finally:
        if not task.done():
            task.cancel()
            job.handle.cancel()


async def stream_events(job: Job) -> AsyncIterator[str]:
    """The request's server-sent events (see the module docstring)."""
    handle, status = job.handle, CLIENT_CLOSED
    tokenizer = job.state.tokenizer
    chunk_usage = {"usage": None} if job.include_usage else {}
    text_offsets = shapes.CompletionLogprobs()
    echo, echo_logprobs = job.echo, True
    try:
        if job.chat:
            choice = shapes.chat_choice(None, None, None, chunk=True, role=True)
            yield shapes.sse({**job.body(choice, chunk=True), **chunk_usage})
        async with contextlib.aclosing(handle.deltas()) as deltas:
            async for delta in deltas:
                group = shapes.Group.of([delta, *handle.drain_ready()])
                logprobs_list = list(group.logprobs)
                if echo_logprobs and not job.chat:  # the prompt's log-probs, before the first
                    logprobs_list = [*(handle.prompt_logprobs or ()), *logprobs_list]
                    echo_logprobs = False
                text, echo = echo + group.text, ""
                if not text and not logprobs_list and group.finish_reason is None:
                    continue
                logprobs = None
                if handle.params.logprobs is not None:
                    logprobs = (shapes.chat_logprobs(tokenizer, logprobs_list) if job.chat
                                else text_offsets.shape(logprobs_list))
                choice = (shapes.chat_choice(text, logprobs, group.finish_reason, chunk=True)
                          if job.chat else
                          shapes.completion_choice(text, logprobs, group.finish_reason))
                yield shapes.sse({**job.body(choice, chunk=True), **chunk_usage})
                if group.finish_reason is not None:
                    break
        if job.include_usage:
            usage = shapes.usage(len(handle.prompt_ids), len(handle.output_ids))
            yield shapes.sse(job.body({}, usage, chunk=True))
        status = 200
        # Recorded before [DONE]: the playground asks for the attention as soon as it sees it.
        job.remember()
        yield shapes.DONE
    except (RequestTimeout, EngineClosed, RuntimeError) as error:
        api_error = running_error(error)
        status = api_error.status
        yield shapes.error_event(api_error)
        yield shapes.DONE
    finally:  # also when the client went away: the generator is cancelled or closed
        if handle.finished_at is None:
            handle.cancel()
        job.done(status)
