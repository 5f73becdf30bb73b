"""The JSON the completion endpoints answer with, in the shapes of OpenAI's API reference:
responses and streamed chunks of /v1/completions ("text_completion") and
/v1/chat/completions ("chat.completion" / "chat.completion.chunk"), `usage`, the two logprobs
shapes, and server-sent events (`data: {json}` lines, `data: [DONE]` last).

    completions logprobs: {"tokens": [...], "token_logprobs": [...], "top_logprobs":
                           [{token: logprob}, ...], "text_offset": [...]}
    chat logprobs:        {"content": [{"token", "logprob", "bytes", "top_logprobs":
                           [{"token", "logprob", "bytes"}]}]}

Log-probabilities JSON cannot carry (-inf) are sent as -9999.0, as OpenAI does.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from attnlab.serve.errors import ApiError
from attnlab.tokenizers import Tokenizer
from attnlab.tokenizers.bpe import byte_level_bytes

if TYPE_CHECKING:
    from attnlab.serve.requests import Delta, TokenLogprob

DONE = "data: [DONE]\n\n"
BYTE_FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def sse(payload: dict[str, Any]) -> str:
    """One server-sent event carrying `payload` as JSON."""
    text = json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return f"data: {text}\n\n"


def finite(value: float | None) -> float | None:
    """A log-probability JSON can carry: -inf (a token the model rules out) as -9999.0, as
    OpenAI reports it; NaN is not a number any client can read either."""
    if value is None:
        return None
    return value if math.isfinite(value) else -9999.0


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def error_event(error: ApiError) -> str:
    """An error in the middle of a stream (the status line has gone): the error object as an
    event of its own, then the stream ends with [DONE]."""
    return sse(error.body())


@dataclass
class Group:
    """Deltas that were ready together, sent as one chunk."""

    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None

    @classmethod
    def of(cls, deltas: Sequence[Delta]) -> Group:
        group = cls()
        for delta in deltas:
            group.text += delta.text
            group.token_ids.extend(delta.token_ids)
            group.logprobs.extend(delta.logprobs)
            group.finish_reason = delta.finish_reason or group.finish_reason
        return group


def response_body(chat: bool, completion_id: str, created: int, model: str,
                  choice: dict[str, Any] | None, usage_: dict[str, int] | None,
                  chunk: bool = False) -> dict[str, Any]:
    """A response or streamed chunk around one choice: "text_completion" (completions, whole or
    streamed), "chat.completion" or "chat.completion.chunk"; a chunk carries `usage` only when
    given, a whole response always."""
    kind = ("chat.completion.chunk" if chunk else "chat.completion") if chat \
        else "text_completion"
    body = {"id": completion_id, "object": kind, "created": created, "model": model,
            "choices": [choice] if choice else []}
    if usage_ is not None or not chunk:
        body["usage"] = usage_
    return body


# -- /v1/completions ------------------------------------------------------------------------------

class CompletionLogprobs:
    """OpenAI's completions logprobs, built chunk by chunk: `text_offset` counts characters of
    the text returned so far (the echoed prompt included), token by token."""

    def __init__(self, offset: int = 0) -> None:
        self.offset = offset

    def shape(self, logprobs: Sequence[TokenLogprob]) -> dict[str, list[Any]]:
        tokens, token_logprobs, top, offsets = [], [], [], []
        for item in logprobs:
            tokens.append(item.token)
            token_logprobs.append(finite(item.logprob))
            top.append(None if item.logprob is None else
                       {text: finite(value) for _, text, value in item.top})
            offsets.append(self.offset)
            self.offset += len(item.token)
        return {"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": top,
                "text_offset": offsets}


def completion_choice(text: str, logprobs: dict[str, Any] | None,
                      finish_reason: str | None) -> dict[str, Any]:
    return {"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish_reason}


# -- /v1/chat/completions -------------------------------------------------------------------------

def token_bytes(tokenizer: Tokenizer, token_id: int, text: str) -> list[int]:
    """The raw UTF-8 bytes a token stands for (a byte-level token may hold half a character,
    which its decoded text cannot show); `text` where the vocabulary does not say more."""
    piece = tokenizer.id_to_token(token_id)
    if piece is not None and token_id not in tokenizer.special_token_ids():
        raw = byte_level_bytes(piece) if tokenizer.is_byte_level else None
        if raw is not None:
            return list(raw)
        match = BYTE_FALLBACK.fullmatch(piece)
        if match:
            return [int(match.group(1), 16)]
    return list(text.encode("utf-8"))


def chat_logprobs(tokenizer: Tokenizer, logprobs: Sequence[TokenLogprob]) -> dict[str, Any]:
    def entry(token_id: int, text: str, value: float | None) -> dict[str, Any]:
        return {"token": text, "logprob": finite(value),
                "bytes": token_bytes(tokenizer, token_id, text)}

    return {"content": [
        {**entry(item.token_id, item.token, item.logprob),
         "top_logprobs": [entry(i, text, value) for i, text, value in item.top]}
        for item in logprobs]}


def chat_choice(text: str | None, logprobs: dict[str, Any] | None, finish_reason: str | None,
                *, chunk: bool, role: bool = False) -> dict[str, Any]:
    """A chat choice: `message` in a response, `delta` in a chunk (the first chunk says the
    role, the others the new content)."""
    if not chunk:
        return {"index": 0, "message": {"role": "assistant", "content": text},
                "logprobs": logprobs, "finish_reason": finish_reason}
    delta: dict[str, Any] = {"role": "assistant", "content": ""} if role else {}
    if text:
        delta["content"] = text
    return {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}

