"""What every route of the server reads: the model, its tokenizer and engine, the metrics, the
recent completions the playground shows attention for, the chat template. One object, built
once by `serve.server` and reached as `request.app.state.server` (`server_state(request)`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import Request
from torch import nn

from attnlab.serve.settings import ServeSettings
from attnlab.tokenizers import Tokenizer

if TYPE_CHECKING:
    from attnlab.serve.engine import Engine
    from attnlab.serve.metrics import Metrics
    from attnlab.serve.recent import RecentCompletions


@dataclass
class ServerState:
    settings: ServeSettings
    model: nn.Module                 # eval mode, on its device
    tokenizer: Tokenizer
    model_id: str                    # the name clients send as "model"
    kind: str                        # generation.mixin model_kind(model)
    engine: Engine | None            # None for encoder-only folders
    metrics: Metrics
    recent: RecentCompletions
    chat_template: str | None        # tokenizer_config.json's "chat_template", if any
    created: int                     # unix time the server started
    draining: bool = False           # set when shutdown begins: /health answers 503

    @property
    def max_model_len(self) -> int:
        """Prompt + completion tokens a request may use (the engine's limit; an encoder-only
        model's own length)."""
        if self.engine is not None:
            return self.engine.max_model_len
        return self.settings.max_model_len or int(self.model.config.max_seq_len)


def server_state(request: Request) -> ServerState:
    return request.app.state.server
