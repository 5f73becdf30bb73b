"""The playground: a web page at `GET /` to write with the served model and watch what it
attended to, and `GET /v1/attention/{completion_id}`, the attention that feeds it.

The page streams a completion from `POST /v1/completions` and then asks for the attention of
the last token it generated: the row of the query that produced that token, over every position
before it (decoder-only: causal self-attention, keys 0 .. query; encoder-decoder: the decoder's
cross-attention over the prompt), per layer and head, read from the viz layer's own maps
(`viz.extract.decoder_maps` / `seq2seq_maps`, the maps `attnlab viz` draws; Vig 2019's
"attention of one token" view).

The page is one self-contained document: the template, stylesheet and script are package data
in `attnlab/serve/playground/` (index.html, playground.css, playground.js), inlined into the one
response; its Content-Security-Policy header allows that script and that stylesheet by their
SHA-256 only, connections to this server only, and nothing else (no CDN, no frames, no forms),
as the HTML viewer's page does (viz/html.py).
"""

from __future__ import annotations

import functools
import threading
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool
from torch import nn

from attnlab.errors import ConfigError
from attnlab.serve.errors import ApiError
from attnlab.serve.state import server_state
from attnlab.tokenizers import Tokenizer
from attnlab.viz.extract import (
    ENCODER_DECODER,
    ENCODER_ONLY,
    decoder_maps,
    family_of,
    readable,
    seq2seq_maps,
)
from attnlab.viz.html import check_slots, read_package_file, sha256_source

ASSETS = ("index.html", "playground.css", "playground.js")  # in attnlab/serve/playground/
_SLOTS = ("STYLE", "SCRIPT")  # written @NAME@ in index.html, once each
DECIMALS = 4
# one attention forward at a time: it shares the CPU (and the model) with the engine's steps
_FORWARD_LOCK = threading.Lock()

router = APIRouter()


def read_asset(name: str) -> str:
    """The text of one shipped playground file (one of `ASSETS`)."""
    return read_package_file("attnlab.serve", "playground", name, ASSETS)


@functools.cache
def render_page() -> tuple[str, str]:
    """(the page, its Content-Security-Policy), built once per process from the package files."""
    page, style, script = (read_asset(name) for name in ASSETS)
    check_slots(page, _SLOTS, "index.html")
    for text, end in ((style, "</style"), (script, "</script")):
        if end in text.lower():
            raise RuntimeError(f"a playground file holds {end}>, which would end its block")
    csp = ("default-src 'none'; "
           f"script-src '{sha256_source(script)}'; style-src '{sha256_source(style)}'; "
           "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
           "frame-ancestors 'none'")
    # index.html writes <style>@STYLE@</style> and <script>@SCRIPT@</script> with nothing
    # around the slots, so the hashed text is exactly the block's text
    page = page.replace("@STYLE@", style, 1).replace("@SCRIPT@", script, 1)
    return page, csp


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def playground_page() -> HTMLResponse:
    """The playground page, with a CSP that lets it run its own script and nothing else."""
    page, csp = render_page()
    return HTMLResponse(page, headers={
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    })


def last_token_attention(model: nn.Module, tokenizer: Tokenizer, prompt_ids: list[int],
                         output_ids: list[int], *, name: str = "model") -> dict[str, Any]:
    """The attention of the query that produced the last of `output_ids`, per layer and head,
    as JSON: {"view", "tokens" (keys), "query", "query_token", "predicted", "layers", "heads",
    "weights": [L][H][S]}. Raises ConfigError / ValueError for a model with no attention."""
    if not output_ids:
        raise ValueError("the completion generated no tokens, so it has no last token to show")
    family = family_of(model)
    if family in ENCODER_ONLY:
        raise ConfigError(f"{name} is an encoder-only ({family}) model; it generates nothing")

    def text_of(token_id: int) -> str:
        return readable(tokenizer, tokenizer.id_to_token(token_id) or f"<{token_id}>")

    with _FORWARD_LOCK:
        if family in ENCODER_DECODER:
            maps = seq2seq_maps(model, tokenizer, prompt_ids, output_ids, name=name)
            cross = [view for view in maps.views if view.kind == "cross"]
            if not cross:
                raise ConfigError(f"{name} ({family}) has no cross-attention to show")
            view = cross[0]
            query = len(output_ids) - 1  # the decoder position that wrote the last token
            reads = output_ids[query - 1] if query else model.config.decoder_start_token_id
            weights = view.weights[:, :, query, :]  # (L, H, S): every prompt token
            keys = view.key_tokens
        else:
            maps = decoder_maps(model, tokenizer, [*prompt_ids, *output_ids], name=name)
            view = maps.views[0]
            query = len(prompt_ids) + len(output_ids) - 2  # reads the token before the last
            reads = [*prompt_ids, *output_ids][query]
            weights = view.weights[:, :, query, : query + 1]  # (L, H, query + 1)
            keys = view.key_tokens[: query + 1]
    return {
        "view": view.name,
        "tokens": list(keys),
        "query": query,
        "query_token": text_of(reads),
        "predicted": text_of(output_ids[-1]),
        "layers": int(weights.size(0)),
        "heads": int(weights.size(1)),
        "weights": weights.double().round(decimals=DECIMALS).tolist(),
    }


@router.get("/v1/attention/{completion_id}")
async def completion_attention(completion_id: str, request: Request) -> dict[str, Any]:
    """The attention of the last generated token of a finished completion still kept."""
    state = server_state(request)
    found = state.recent.get(completion_id)
    if found is None:
        raise ApiError(404, f"no finished completion {completion_id!r} is kept: the id is "
                       f"unknown, or older than the last {state.recent.capacity} completions",
                       param="completion_id", code="completion_not_found")
    prompt_ids, output_ids = found
    try:
        body = await run_in_threadpool(last_token_attention, state.model, state.tokenizer,
                                       prompt_ids, output_ids, name=state.model_id)
    except (ConfigError, ValueError) as error:
        raise ApiError(400, f"no attention to show for {completion_id}: {error}",
                       param="completion_id") from None
    return {"id": completion_id, "object": "attention", "model": state.model_id, **body}
