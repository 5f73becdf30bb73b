"""What `attnlab serve` is started with: one frozen dataclass, each field declared once with
`setting(default, help)`, so `attnlab serve --help` and its flags are generated from here
(`attnlab.cli.settings.add_settings_flags`) and every value is checked in one place.

The limits are the ones the issue asks for: concurrent sequences (`max_batch`, the slots of
the batched KV cache), queued requests beyond them (`max_queue`, then 429 with Retry-After),
prompt + completion tokens (`max_model_len`, 400 naming it), how long one request may take
(`request_timeout`, 408) and how long SIGTERM waits for in-flight requests (`drain_timeout`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from attnlab.training.settings import (
    SettingError,
    check_choice,
    check_non_negative_ints,
    check_positive_ints,
    check_positive_numbers,
    setting,
)

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


@dataclass(frozen=True)
class ServeSettings:
    """The server's address, the model it serves and its limits."""

    model: str = setting("", "model folder (HF or attnlab) or a llama.cpp .gguf file")
    host: str = setting("127.0.0.1", "address to listen on (0.0.0.0: every interface; the "
                                     "server has no authentication)")
    port: int = setting(8000, "TCP port to listen on")
    model_name: str | None = setting(None, "the name clients send as \"model\" and /v1/models "
                                           "lists (none: the folder's name)")
    max_batch: int = setting(32, "sequences decoded together (slots of the batched KV cache)")
    max_queue: int = setting(64, "requests waiting for a slot; one more is refused with 429 "
                                 "and Retry-After")
    max_model_len: int | None = setting(None, "prompt + completion tokens a request may use "
                                              "(none: the model's max_seq_len)")
    request_timeout: float = setting(600.0, "seconds one request may take, queued and "
                                            "decoding, before it ends with 408")
    drain_timeout: float = setting(30.0, "on SIGTERM: seconds in-flight requests get to "
                                         "finish before the server exits")
    max_logprobs: int = setting(20, "the most alternatives a request may ask for with "
                                    "logprobs / top_logprobs")
    log_level: str = setting("info", "uvicorn's log level", choices=LOG_LEVELS)

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise SettingError("model", "model is required: a model folder or a .gguf file")
        if not isinstance(self.host, str) or not self.host:
            raise SettingError("host", f"host must be an address, got {self.host!r}")
        check_positive_ints(self, ("port", "max_batch"))
        if self.port > 65535:
            raise SettingError("port", f"port must be in [1, 65535], got {self.port}")
        check_non_negative_ints(self, ("max_queue", "max_logprobs"))
        if self.max_model_len is not None:
            check_positive_ints(self, ("max_model_len",))
        check_positive_numbers(self, ("request_timeout", "drain_timeout"))
        if self.model_name is not None and (not isinstance(self.model_name, str)
                                            or not self.model_name.strip()):
            raise SettingError("model_name", f"model_name must be a non-empty name, "
                                             f"got {self.model_name!r}")
        check_choice(self, "log_level", LOG_LEVELS)

    @property
    def model_id(self) -> str:
        """The served model's name: --model-name, else the folder's name (a file's stem)."""
        if self.model_name:
            return self.model_name
        path = Path(self.model).resolve()
        return path.stem if path.is_file() else path.name
