"""The FastAPI application of `attnlab serve`: every router, the error handlers, GET /health and
GET /v1/models, and the engine's life (started with the app; at shutdown, once uvicorn has let
the in-flight requests finish, stopped within the drain timeout).

    app = build_app(state)          # state: serve.state.ServerState, built by serve.server

One middleware sits outside the routes: it counts every request to the endpoints the metrics
follow that no route counted itself (a 400 from validation, a 404), and turns an exception no
handler expected into one 500 in OpenAI's shape, its traceback logged once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from attnlab.serve import completions, embeddings, playground
from attnlab.serve.errors import ApiError, install_error_handlers, internal_error, model_not_found
from attnlab.serve.state import ServerState, server_state

log = logging.getLogger("attnlab.serve")
# Endpoints counted in attnlab_requests_total, whatever their answer.
COUNTED = (completions.COMPLETIONS, completions.CHAT, "/v1/embeddings")
router = APIRouter()


@router.get("/health")
async def health(request: Request) -> dict[str, str]:
    state = server_state(request)
    engine = state.engine
    if state.draining or (engine is not None and engine.stats().draining):
        raise ApiError(503, "the server is shutting down")
    return {"status": "ok"}


def model_card(state: ServerState) -> dict[str, Any]:
    return {"id": state.model_id, "object": "model", "created": state.created,
            "owned_by": "attnlab", "max_model_len": state.max_model_len, "kind": state.kind}


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    return {"object": "list", "data": [model_card(server_state(request))]}


@router.get("/v1/models/{model_id:path}")
async def retrieve_model(model_id: str, request: Request) -> dict[str, Any]:
    state = server_state(request)
    if model_id != state.model_id:
        raise model_not_found(model_id)
    return model_card(state)


class ApiMiddleware:
    """Counts requests to COUNTED endpoints no route counted, and answers an unexpected
    exception with a 500 (when the response has not begun) after logging its traceback."""

    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = False

        async def watch(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception:
            log.exception("unexpected error on %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await internal_error().response()(scope, receive, send)
        finally:
            path = scope.get("path", "")
            if path in COUNTED and not scope.get("state", {}).get("metrics_recorded"):
                self.state.metrics.request_done(path, status)


def build_app(state: ServerState) -> FastAPI:
    """The application serving `state`'s model."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if state.engine is not None:
            state.engine.start()
        try:
            yield
        finally:
            state.draining = True
            if state.engine is not None:  # blocking: off the event loop, which delivers
                await asyncio.to_thread(state.engine.stop, state.settings.drain_timeout)

    app = FastAPI(title="attnlab serve", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.server = state
    install_error_handlers(app)
    app.include_router(router)
    app.include_router(completions.router)
    app.include_router(embeddings.router)
    app.include_router(state.metrics.router)
    app.include_router(playground.router)
    app.add_middleware(ApiMiddleware, state=state)
    return app
