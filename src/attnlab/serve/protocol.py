"""The request bodies of POST /v1/completions and /v1/chat/completions, as OpenAI's API reference
defines them (plus vLLM's `top_k` and `ignore_eos`), checked before anything reaches the engine.

Pydantic checks each parameter's type (strictly: "0.5" is not a number, true is not an integer)
and range (temperature >= 0, top_p in (0, 1], max_tokens >= 1, logprobs >= 0, at most 4 stop
strings, n = 1) and refuses unknown parameters (`extra="forbid"`), which `serve.errors` turns
into one 400 naming them. `check(settings)` adds what depends on the server (the largest
logprobs) or on two parameters together. Parameters that common clients send at their neutral
value (frequency_penalty 0, presence_penalty 0, logit_bias {}, best_of 1) are accepted at that
value only: anything else would be silently ignored, so it is refused, named.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from attnlab.serve.errors import ApiError

MAX_STOP = 4  # OpenAI's limit on stop strings
NEUTRAL = {"frequency_penalty": 0, "presence_penalty": 0, "best_of": 1}


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    include_usage: bool = False


class SamplingRequest(BaseModel):
    """What completions and chat completions share."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str | None = None  # None: the one model served
    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=-1)  # vLLM's extension; 0 and -1: off
    seed: int | None = None
    stop: list[str] | None = None  # a string is read as a list of one
    n: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    ignore_eos: bool = False  # vLLM's extension: decode max_tokens tokens whatever the model says
    user: str | None = None  # accepted, not used
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logit_bias: dict[str, float] | None = None

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            if len(value) > MAX_STOP:
                raise ValueError(f"at most {MAX_STOP} stop sequences are allowed")
            if any(not isinstance(s, str) or not s for s in value):
                raise ValueError("must be a non-empty string or a list of them")
        return value

    @field_validator("n")
    @classmethod
    def _only_one(cls, value: int | None) -> int | None:
        if value not in (None, 1):
            raise ValueError("only n=1 is supported (send one request per completion)")
        return value

    def check(self, max_logprobs: int) -> None:
        """What pydantic cannot see from one field: parameters given at a value this server
        would ignore, and stream_options without stream."""
        for name, neutral in NEUTRAL.items():
            value = getattr(self, name, None)
            if value is not None and value != neutral:
                raise ApiError(400, f"{name} is not supported (only {neutral}), got {value}",
                               param=name)
        if self.logit_bias:
            raise ApiError(400, "logit_bias is not supported (only {})", param="logit_bias")
        if self.stream_options is not None and not self.stream:
            raise ApiError(400, "stream_options is only allowed when stream is true",
                           param="stream_options")

    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage

    def sampling(self, max_tokens: int, logprobs: int | None,
                 prompt_logprobs: bool = False) -> dict[str, Any]:
        """The engine's SamplingParams fields for this request."""
        top_k = self.top_k if self.top_k is not None and self.top_k > 0 else 0
        return dict(max_tokens=max_tokens,
                    temperature=1.0 if self.temperature is None else float(self.temperature),
                    top_p=1.0 if self.top_p is None else float(self.top_p), top_k=top_k,
                    seed=self.seed, stop=tuple(self.stop or ()), logprobs=logprobs,
                    prompt_logprobs=prompt_logprobs, ignore_eos=self.ignore_eos)


class CompletionRequest(SamplingRequest):
    """POST /v1/completions: `prompt` is a text, a list of one text, token ids, or a list of one
    list of token ids (one prompt per request, as n=1)."""

    prompt: str | list[int]
    max_tokens: int | None = Field(16, ge=1)
    logprobs: int | None = Field(None, ge=0)
    echo: bool = False
    best_of: int | None = None
    suffix: str | None = None

    @field_validator("prompt", mode="before")
    @classmethod
    def _one_prompt(cls, value: Any) -> Any:
        if isinstance(value, list) and value and all(isinstance(v, str | list) for v in value):
            if len(value) != 1:
                raise ValueError(f"one prompt per request is supported (n=1), not {len(value)}")
            value = value[0]
        if isinstance(value, list) and not value:
            raise ValueError("must not be empty")
        if not isinstance(value, str) and not (isinstance(value, list)
                                               and all(type(v) is int for v in value)):
            raise ValueError("must be a string or a list of token ids (integers)")
        return value

    def check(self, max_logprobs: int) -> None:
        super().check(max_logprobs)
        if self.suffix:
            raise ApiError(400, "suffix is not supported", param="suffix")
        if self.logprobs is not None and self.logprobs > max_logprobs:
            raise ApiError(400, f"logprobs must be at most {max_logprobs}, got {self.logprobs}",
                           param="logprobs")


class ChatCompletionRequest(SamplingRequest):
    """POST /v1/chat/completions: `messages` ({"role", "content"} each; checked by
    `serve.chat.render_chat`), `max_completion_tokens` or its older name `max_tokens` (default:
    as many as the model's length leaves), `logprobs` (bool) with `top_logprobs`."""

    messages: list[dict[str, Any]]
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0)

    @field_validator("messages", mode="before")
    @classmethod
    def _some_messages(cls, value: Any) -> Any:
        if isinstance(value, list) and not value:
            raise ValueError("must hold at least one message")
        return value

    def check(self, max_logprobs: int) -> None:
        super().check(max_logprobs)
        if self.top_logprobs is not None and not self.logprobs:
            raise ApiError(400, "top_logprobs needs logprobs to be true", param="top_logprobs")
        if self.top_logprobs is not None and self.top_logprobs > max_logprobs:
            raise ApiError(400, f"top_logprobs must be at most {max_logprobs}, got "
                                f"{self.top_logprobs}", param="top_logprobs")

    def completion_limit(self) -> int | None:
        """max_completion_tokens, else max_tokens; None: up to the model's length."""
        return self.max_completion_tokens or self.max_tokens

    def top_k_logprobs(self) -> int | None:
        """The engine's `logprobs`: None (not asked), else the number of alternatives."""
        return (self.top_logprobs or 0) if self.logprobs else None
