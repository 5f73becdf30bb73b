"""Every error of the server in OpenAI's JSON shape, `{"error": {"message", "type", "param",
"code"}}`, with the status codes clients and their retry logic expect (the OpenAI API reference;
vLLM turns FastAPI's 422 into 400 the same way).

    raise ApiError(400, "temperature must be >= 0, got -1", param="temperature")

A request's mistake is a 4xx naming the parameter; the body FastAPI cannot read (bad JSON, a
wrong type, an unknown parameter) is a 400 too, never a 422; an exception nobody expected is a
500 with a generic message, its traceback in the server's log, never in the response.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("attnlab.serve")

# status -> OpenAI's error type
ERROR_TYPES = {400: "invalid_request_error", 404: "invalid_request_error",
               405: "invalid_request_error", 408: "timeout_error", 413: "invalid_request_error",
               429: "rate_limit_error", 500: "server_error", 503: "service_unavailable"}
INTERNAL_MESSAGE = "The server had an error while processing your request (see its log)."


class ApiError(Exception):
    """A request the server refuses, as an HTTP status and OpenAI's error object. `headers`
    (e.g. Retry-After) go on the response."""

    def __init__(self, status: int, message: str, type: str | None = None,
                 param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type or ERROR_TYPES.get(status, "invalid_request_error")
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param,
                          "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def model_not_found(name: str) -> ApiError:
    return ApiError(404, f"The model `{name}` does not exist.", param="model",
                    code="model_not_found")


def _param(loc: tuple[Any, ...]) -> str | None:
    """FastAPI's error location ("body", "messages", 0, "content") as OpenAI names a parameter
    ("messages[0].content"); None for the body as a whole."""
    parts = [p for p in loc if p != "body"]
    name = ""
    for part in parts:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or None


def _shown(value: Any) -> str:
    text = json.dumps(value, default=repr)
    return text if len(text) <= 80 else text[:77] + "..."


def validation_error(errors: list[dict[str, Any]]) -> ApiError:
    """The first of pydantic's errors as one 400: unknown parameters all named at once, bad
    JSON said so, otherwise the parameter, what it must be and what was given."""
    unknown = [_param(e["loc"]) for e in errors if e.get("type") == "extra_forbidden"]
    if unknown:
        return ApiError(400, "Unrecognized request argument(s) supplied: "
                             + ", ".join(str(u) for u in unknown), param=unknown[0])
    error = errors[0]
    kind = error.get("type", "")
    if kind == "json_invalid":
        reason = error.get("ctx", {}).get("error", "")
        return ApiError(400, f"The request body is not valid JSON ({reason}).")
    param = _param(tuple(error.get("loc", ())))
    if param is None and isinstance(error.get("input"), bytes):  # not sent as JSON
        return ApiError(400, "The request body must be a JSON object sent with Content-Type: "
                             "application/json.")
    if param is None and kind == "missing":
        return ApiError(400, "The request body is empty: send a JSON object of parameters.")
    if kind == "missing":
        return ApiError(400, f"Missing required parameter: '{param}'.", param=param)
    if param is None:
        return ApiError(400, f"The request body must be a JSON object, got "
                             f"{_shown(error.get('input'))}.")
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    message = message[0].lower() + message[1:] if message else message
    return ApiError(400, f"{param}: {message}, got {_shown(error.get('input'))}", param=param)


async def _api_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ApiError)
    return error.response()


async def _request_validation(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    return validation_error(list(error.errors())).response()


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    """Starlette's own errors (unknown route 404, wrong method 405) in the same shape."""
    assert isinstance(error, StarletteHTTPException)
    message = {404: f"No route {request.url.path}", 405: f"Method {request.method} is not "
               f"allowed on {request.url.path}"}.get(error.status_code, str(error.detail))
    return ApiError(error.status_code, message, headers=dict(error.headers or {})).response()


def install_error_handlers(app: FastAPI) -> None:
    """ApiError, FastAPI's validation errors and Starlette's HTTP errors as OpenAI's JSON. (An
    unexpected exception is caught by `serve.app`'s middleware: one 500, one logged traceback.)"""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(StarletteHTTPException, _http_error)


def internal_error() -> ApiError:
    return ApiError(500, INTERNAL_MESSAGE)
