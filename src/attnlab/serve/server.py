"""`attnlab serve` once the model is loaded: the server's state (tokenizer, engine, metrics,
recent completions, chat template) and uvicorn running the app until SIGTERM or Ctrl-C.

    state = build_state(settings, model)    # model: eval mode, weights and device as asked
    serve(settings, model)                   # blocks; 0 after a clean shutdown

Shutdown (SIGTERM or Ctrl-C): uvicorn stops accepting connections and lets in-flight requests
(streams included) finish for up to `drain_timeout` seconds; then the app's lifespan stops the
engine. uvicorn re-raises the signal it caught once it is done: SIGTERM lands on a handler of
ours that does nothing, so the process exits 0 (a drain is a normal end, not a kill); Ctrl-C
stays Python's KeyboardInterrupt (the CLI's 130).
"""

from __future__ import annotations

import signal
import time
from typing import Any

import uvicorn
from torch import nn

from attnlab.errors import ConfigError
from attnlab.generation.mixin import GENERATING_KINDS, model_kind
from attnlab.io import load_chat_template, load_tokenizer
from attnlab.serve.app import build_app
from attnlab.serve.chat import check_chat_template, template_tokens
from attnlab.serve.engine import Engine
from attnlab.serve.metrics import Metrics
from attnlab.serve.recent import RecentCompletions
from attnlab.serve.settings import ServeSettings
from attnlab.serve.state import ServerState


def build_state(settings: ServeSettings, model: nn.Module) -> ServerState:
    """Everything the routes read, for `model` loaded from `settings.model`; a ConfigError
    names the flag for a limit the model cannot honour."""
    tokenizer = load_tokenizer(settings.model)
    model.eval().requires_grad_(False)  # serving never trains: no autograd graph per step
    kind = model_kind(model)
    limit = getattr(model.config, "max_seq_len", None)
    if settings.max_model_len is not None and limit is not None and settings.max_model_len > limit:
        raise ConfigError(f"--max-model-len must be at most the model's max_seq_len ({limit}), "
                          f"got {settings.max_model_len}")
    template = load_chat_template(settings.model)
    if template is not None and kind in GENERATING_KINDS:
        check_chat_template(template, **template_tokens(tokenizer))
    metrics = Metrics()
    engine = None
    if kind in GENERATING_KINDS:
        engine = Engine(model, tokenizer, max_batch=settings.max_batch,
                        max_queue=settings.max_queue, max_model_len=settings.max_model_len,
                        request_timeout=settings.request_timeout, on_step=metrics.observe_step)
    metrics.bind_engine(engine)
    return ServerState(settings=settings, model=model, tokenizer=tokenizer,
                       model_id=settings.model_id, kind=kind, engine=engine, metrics=metrics,
                       recent=RecentCompletions(), chat_template=template,
                       created=int(time.time()))


def serve(settings: ServeSettings, model: nn.Module) -> int:
    """Serve `model` until SIGTERM (exit 0 once drained) or Ctrl-C (KeyboardInterrupt)."""
    state = build_state(settings, model)
    config = uvicorn.Config(build_app(state), host=settings.host, port=settings.port,
                            log_level=settings.log_level,
                            timeout_graceful_shutdown=settings.drain_timeout)
    server = DrainingServer(config, state)
    print(f"attnlab serve: {state.model_id} ({state.kind}) on "
          f"http://{_host_in_url(settings.host)}:{settings.port}", flush=True)
    previous = signal.signal(signal.SIGTERM, _drained)
    try:
        server.run()
    except SystemExit:
        if server.started:
            raise
        # uvicorn exits when it cannot bind (the port is taken, the address is not ours)
        raise ConfigError(f"--host {settings.host} --port {settings.port}: could not listen "
                          f"there (uvicorn's log line above says why)") from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


class DrainingServer(uvicorn.Server):
    """uvicorn's server that marks the state draining as soon as a signal asks it to stop, so
    /health answers 503 on the connections still open while in-flight requests end."""

    def __init__(self, config: uvicorn.Config, state: ServerState) -> None:
        super().__init__(config)
        self.state = state

    def handle_exit(self, sig: int, frame: Any) -> None:
        self.state.draining = True
        super().handle_exit(sig, frame)


def _drained(signum: int, frame: Any) -> None:
    """SIGTERM after uvicorn's graceful shutdown (it re-raises the signal it handled)."""


def _host_in_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host
