"""POST /v1/embeddings in OpenAI's shape, for encoder-only text folders (BERT): each input's
last hidden state mean-pooled over its real tokens and L2-normalised (the sentence embedding of
Reimers & Gurevych 2019, "Sentence-BERT", mean pooling), as floats or base64 (little-endian
float32, OpenAI's `encoding_format: "base64"`).

    POST /v1/embeddings {"model": "bert", "input": ["a text", "another"]}
    -> {"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [...]}, ...],
        "model": "bert", "usage": {"prompt_tokens": 9, "total_tokens": 9}}

A text is framed the way BERT reads it (`viz.extract.encode_text`: the tokenizer's
post-processor, else [CLS] .. [SEP]); token ids (`[1, 2, 3]` or `[[1, 2], [3]]`) are the model's
input as given, as vLLM takes them. Inputs are batched with padding and an attention mask (a
row's embedding does not depend on its neighbours), the forward runs in the thread pool, off the
event loop.
"""

from __future__ import annotations

import base64
import time
from typing import Any, Literal

import torch
import torch.nn.functional as F
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, StrictStr
from starlette.concurrency import run_in_threadpool
from torch import Tensor, nn

from attnlab.errors import ConfigError
from attnlab.generation import ENCODER_ONLY
from attnlab.serve.errors import ApiError, model_not_found
from attnlab.serve.state import server_state
from attnlab.tokenizers import Tokenizer
from attnlab.viz.extract import encode_text

ENDPOINT = "/v1/embeddings"
MAX_INPUTS = 2048  # OpenAI's limit on inputs per request
TOKENS_PER_FORWARD = 4096  # padded tokens per batch: bounds the forward's memory
TEXT_FAMILIES = ("bert",)  # encoder-only families that read text (ViT, AST, ... do not)

router = APIRouter()


class EmbeddingRequest(BaseModel):
    """OpenAI's embeddings request. `input` is checked by `token_lists` (clearer messages than a
    union type gives)."""

    model_config = ConfigDict(extra="forbid")

    model: StrictStr
    input: Any
    encoding_format: Literal["float", "base64"] = "float"
    user: StrictStr | None = None  # accepted, ignored


@router.post(ENDPOINT)
async def create_embeddings(body: EmbeddingRequest, request: Request) -> dict[str, Any]:
    state = server_state(request)
    started = time.perf_counter()
    try:
        check_model(state, body.model)
        ids = await run_in_threadpool(token_lists, state.model, state.tokenizer, body.input)
        vectors = await run_in_threadpool(embed, state.model, ids)  # (N, D) float32
    except ApiError as error:
        _count(request, error.status)
        raise
    prompt_tokens = sum(map(len, ids))
    _count(request, 200, prompt_tokens=prompt_tokens, latency_s=time.perf_counter() - started)
    return {"object": "list",
            "data": [{"object": "embedding", "index": i,
                      "embedding": _encoded(vector, body.encoding_format)}
                     for i, vector in enumerate(vectors)],
            "model": state.model_id,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}


def _count(request: Request, status: int, **figures: Any) -> None:
    """Count the request in the metrics once, and mark it counted so the app's middleware (which
    counts what no route did: 400s of the body's validation, 500s) leaves it."""
    server_state(request).metrics.request_done(ENDPOINT, status, **figures)
    request.state.metrics_recorded = True


def check_model(state: Any, name: str) -> None:
    """404 for another model's name; 400 for a folder that has no sentence embeddings."""
    if name != state.model_id:
        raise model_not_found(name)
    family = getattr(type(getattr(state.model, "config", None)), "model_type", None)
    if state.kind != ENCODER_ONLY or family not in TEXT_FAMILIES:
        use = " (use /v1/completions or /v1/chat/completions)" if state.kind != ENCODER_ONLY \
            else ""
        raise ApiError(400, f"The model `{name}` ({family}, {state.kind}) does not support "
                            f"embeddings; they come from encoder-only text models such as BERT"
                            f"{use}.", param="model")


def token_lists(model: nn.Module, tokenizer: Tokenizer, value: Any) -> list[list[int]]:
    """`input` (a text, texts, token ids, lists of token ids) as one framed id list per input,
    each within the model's max_seq_len; ApiError 400 naming `input` otherwise."""
    texts_or_ids = _inputs(value)
    limit = model.config.max_seq_len
    lists = []
    for i, item in enumerate(texts_or_ids):
        where = "input" if isinstance(value, str) or _is_ids(value) else f"input[{i}]"
        if isinstance(item, str):
            if not item.strip():
                raise ApiError(400, f"{where} is empty; give text to embed", param="input")
            try:
                ids = encode_text(model, tokenizer, item).ids
            except ConfigError:  # the framed text is over max_seq_len
                raise ApiError(400, f"{where} is longer than the model's max_seq_len={limit} "
                                    f"tokens; shorten it", param="input") from None
        else:
            ids = _checked_ids(item, model.config.vocab_size, limit, where)
        lists.append(ids)
    return lists


def _is_ids(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(_is_int(v) for v in value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _inputs(value: Any) -> list[str] | list[list[int]]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        if len(value) > MAX_INPUTS:
            raise ApiError(400, f"input has {len(value)} items, more than {MAX_INPUTS}",
                           param="input")
        if all(isinstance(v, str) for v in value):
            return list(value)
        if _is_ids(value):
            return [list(value)]
        if all(isinstance(v, list) and all(_is_int(t) for t in v) for v in value):
            return [list(v) for v in value]
    if isinstance(value, list) and not value:
        raise ApiError(400, "input is empty; give a text, a list of texts or token ids",
                       param="input")
    raise ApiError(400, "input must be a string, a list of strings, a list of token ids or a "
                        "list of lists of token ids", param="input")


def _checked_ids(ids: list[int], vocab_size: int, limit: int, where: str) -> list[int]:
    if not ids:
        raise ApiError(400, f"{where} is empty; give token ids to embed", param="input")
    if len(ids) > limit:
        raise ApiError(400, f"{where} has {len(ids)} tokens, more than the model's "
                            f"max_seq_len={limit}", param="input")
    bad = next((t for t in ids if not 0 <= t < vocab_size), None)
    if bad is not None:
        raise ApiError(400, f"{where} holds token id {bad}, outside the vocabulary "
                            f"[0, {vocab_size})", param="input")
    return ids


def embed(model: nn.Module, ids: list[list[int]]) -> Tensor:
    """(N, D) float32: each id list's last hidden state averaged over its tokens, unit length.
    Rows are batched by length (less padding), the padding masked out of attention and mean."""
    device = next(model.parameters()).device
    pad = model.config.pad_token_id
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out = torch.empty(len(ids), model.config.d_model)
    with torch.inference_mode():
        for batch in _batches(order, ids):
            width = len(ids[batch[-1]])  # the longest of the batch (sorted)
            input_ids = torch.full((len(batch), width), pad, dtype=torch.long)  # (B, T)
            mask = torch.zeros(len(batch), width, dtype=torch.bool)  # (B, T): True = real
            for row, i in enumerate(batch):
                input_ids[row, :len(ids[i])] = torch.tensor(ids[i])
                mask[row, :len(ids[i])] = True
            hidden = model.encode(input_ids.to(device), attention_mask=mask.to(device)
                                  ).last_hidden_state.float().cpu()  # (B, T, D), no heads
            weights = mask.unsqueeze(-1).float()  # (B, T, 1)
            mean = (hidden * weights).sum(1) / weights.sum(1)  # (B, D)
            out[batch] = F.normalize(mean, dim=-1)
    return out


def _batches(order: list[int], ids: list[list[int]]) -> list[list[int]]:
    """`order` (sorted by length) cut into batches of at most TOKENS_PER_FORWARD padded tokens."""
    batches: list[list[int]] = []
    for i in order:
        if batches and (len(batches[-1]) + 1) * len(ids[i]) <= TOKENS_PER_FORWARD:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def _encoded(vector: Tensor, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        little_endian = vector.numpy().astype("<f4")
        return base64.b64encode(little_endian.tobytes()).decode("ascii")
    return vector.tolist()
