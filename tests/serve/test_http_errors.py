"""The server's error policy and response pieces, in-process (the app through httpx's ASGI
transport, no socket): an exception nobody expected is one 500 with a generic message, its
traceback in the log and never in the response, and still counted in the metrics; pydantic's
error locations become OpenAI's parameter names; server-sent events and log-probabilities are
valid JSON; token bytes are the raw bytes of a byte-level token."""

from __future__ import annotations

import asyncio
import json
import logging

import httpx
import pytest
import torch

from attnlab.models.auto import from_pretrained
from attnlab.serve.app import build_app
from attnlab.serve.errors import INTERNAL_MESSAGE, validation_error
from attnlab.serve.responses import finite, sse, token_bytes
from attnlab.serve.server import build_state
from attnlab.serve.settings import ServeSettings


@pytest.fixture(scope="module")
def state(gpt2_dir):
    torch.set_num_threads(1)
    return build_state(ServeSettings(model=str(gpt2_dir)), from_pretrained(gpt2_dir))


def post(app, path: str, body: dict) -> httpx.Response:
    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post(path, json=body)

    return asyncio.run(send())


def test_an_unexpected_error_is_a_generic_500_logged_with_its_traceback(state, monkeypatch,
                                                                         caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(state.engine, "submit", broken)
    app = build_app(state)
    with caplog.at_level(logging.ERROR, logger="attnlab.serve"):
        response = post(app, "/v1/completions", {"prompt": "the", "max_tokens": 2})
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["message"] == INTERNAL_MESSAGE and error["type"] == "server_error"
    assert "secret" not in response.text
    assert any("secret internal detail" in (r.exc_text or "") for r in caplog.records)
    metrics = state.metrics.registry.get_sample_value(
        "attnlab_requests_total", {"endpoint": "/v1/completions", "status": "500"})
    assert metrics == 1.0


def test_validation_errors_name_the_parameter_as_openai_does():
    nested = validation_error([{"type": "string_type", "loc": ("body", "messages", 0, "content"),
                                "msg": "Input should be a valid string", "input": 3}])
    assert nested.param == "messages[0].content" and nested.status == 400
    assert nested.message == "messages[0].content: input should be a valid string, got 3"
    unknown = validation_error([{"type": "extra_forbidden", "loc": ("body", "a"), "msg": "",
                                 "input": 1},
                                {"type": "extra_forbidden", "loc": ("body", "b"), "msg": "",
                                 "input": 2}])
    assert unknown.param == "a" and "a, b" in unknown.message


def test_events_and_log_probabilities_are_valid_json():
    event = sse({"text": "日本", "logprob": finite(float("-inf"))})
    assert event.startswith("data: ") and event.endswith("\n\n")
    assert json.loads(event[len("data: "):]) == {"text": "日本", "logprob": -9999.0}
    assert finite(None) is None and finite(-0.5) == -0.5


def test_token_bytes_are_the_raw_bytes_of_a_byte_level_token(state):
    tokenizer = state.tokenizer
    ids = tokenizer.encode("日")  # three UTF-8 bytes, maybe split over tokens
    raw = [b for i in ids for b in token_bytes(tokenizer, i, tokenizer.decode([i]))]
    assert bytes(raw) == "日".encode()
    eos = tokenizer.eos_id
    assert token_bytes(tokenizer, eos, "<|endoftext|>") == list(b"<|endoftext|>")
