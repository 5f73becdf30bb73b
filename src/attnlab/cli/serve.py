"""Serve a model folder over HTTP with OpenAI's API: the tools and clients that speak it
(curl, httpx, the `openai` package with base_url) work unchanged. Concurrent requests are
decoded together (continuous batching); GET / is a playground that shows the attention of the
last generated token. A generating folder (GPT-2, LLaMA, T5, the Transformer) serves
completions and chat completions; an encoder folder (BERT) serves embeddings.

    attnlab serve --model runs/lm                                  # http://127.0.0.1:8000
    curl http://127.0.0.1:8000/v1/completions -H 'Content-Type: application/json' \\
         -d '{"prompt": "Once upon a time", "max_tokens": 32, "temperature": 0}'
    curl -N http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' \\
         -d '{"messages": [{"role": "user", "content": "Hello"}], "stream": true}'
    curl http://127.0.0.1:8000/v1/models
    curl http://127.0.0.1:8000/metrics                             # Prometheus text

Endpoints: POST /v1/completions, POST /v1/chat/completions, POST /v1/embeddings, GET /v1/models,
GET /health, GET /metrics, GET / (playground). Parameters: max_tokens, temperature, top_p,
top_k, seed, stop, n=1, stream (+ stream_options.include_usage), logprobs, echo; anything else
is a 400 naming it. Limits: --max-batch sequences at once, --max-queue waiting (then 429 with
Retry-After), --max-model-len tokens per request (400), --request-timeout (408). SIGTERM stops
accepting, lets in-flight requests finish (--drain-timeout), then exits 0. The server has no
authentication: keep --host 127.0.0.1 unless a proxy in front of it checks who calls.
"""

from __future__ import annotations

import argparse

from attnlab.cli.generate import add_decoding_flags, ready_for_decoding
from attnlab.cli.settings import add_settings_flags, settings_from_args
from attnlab.errors import ConfigError
from attnlab.serve.settings import ServeSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_flags(parser, ServeSettings)  # type: ignore[arg-type]  # any settings dataclass
    model = parser._option_string_actions["--model"]
    model.required = True
    model.help = ServeSettings.__dataclass_fields__["model"].metadata["help"]
    add_decoding_flags(parser)


# The serve extra's packages (pyproject.toml) and the module each is imported as.
SERVE_EXTRA = {"fastapi": "fastapi", "uvicorn": "uvicorn", "prometheus-client": "prometheus_client",
               "jinja2": "jinja2"}


def require_serve_extra() -> None:
    """A ConfigError naming what to install when the optional serve packages are missing."""
    import importlib.util

    missing = [name for name, module in SERVE_EXTRA.items()
               if importlib.util.find_spec(module) is None]
    if missing:
        raise ConfigError(f"attnlab serve needs the serve extra, missing {', '.join(missing)}: "
                          f"pip install 'attnlab[serve]' (make test installs it)")


def run(args: argparse.Namespace) -> int:
    require_serve_extra()
    from attnlab.models.auto import from_pretrained
    from attnlab.serve.server import serve

    settings = settings_from_args(ServeSettings, args)  # type: ignore[type-var]
    model = from_pretrained(settings.model)
    ready_for_decoding(model, args)
    return serve(settings, model)
