"""serve.embeddings: POST /v1/embeddings on a random bert-tiny folder through a FastAPI
TestClient (no server process), checked against a float64 mean-pool computed by hand from the
model's last hidden state; padding, base64, token-id input, metrics and every refusal."""

from __future__ import annotations

import base64
import copy
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from fastapi import FastAPI
from fastapi.testclient import TestClient
from tokenizers import processors

import attnlab
from attnlab.generation.mixin import model_kind
from attnlab.models import build_model
from attnlab.serve import embeddings
from attnlab.serve.errors import install_error_handlers
from attnlab.serve.metrics import Metrics
from attnlab.tokenizers import Tokenizer

TEXTS = ["the apple was juicy", "apple stock crashed on monday and fell again today",
         "héllo wörld 日本語"]


def make_client(model: torch.nn.Module, tokenizer: Tokenizer, model_id: str = "bert") -> Any:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(embeddings.router)
    app.state.server = SimpleNamespace(model=model, tokenizer=tokenizer, model_id=model_id,
                                       kind=model_kind(model), metrics=Metrics())
    return TestClient(app)


@pytest.fixture(scope="module")
def bert(bert_dir: Path) -> tuple[torch.nn.Module, Tokenizer]:
    return attnlab.from_pretrained(bert_dir).eval(), Tokenizer.load(bert_dir)


@pytest.fixture(scope="module")
def client(bert) -> TestClient:
    return make_client(*bert)


def framed(tokenizer: Tokenizer, text: str) -> list[int]:
    """BERT's framing, written out: [CLS] text [SEP] (the test folder has no post-processor)."""
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    return [cls, *tokenizer.encode(text), sep]


def reference(model: torch.nn.Module, ids: list[int]) -> np.ndarray:
    """float64, one text alone: the mean of the last hidden state over its tokens, unit norm."""
    double = copy.deepcopy(model).double()
    with torch.no_grad():
        hidden = double(torch.tensor([ids])).last_hidden_state[0]  # (T, D)
    mean = hidden.mean(0)
    return (mean / mean.norm()).numpy()


def post(client: TestClient, **body: Any) -> Any:
    return client.post("/v1/embeddings", json={"model": "bert", **body})


def vectors(response: Any) -> np.ndarray:
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert [d["index"] for d in data] == list(range(len(data)))
    assert all(d["object"] == "embedding" for d in data)
    return np.array([d["embedding"] for d in data])


def test_mean_pooled_normalised_against_float64(client, bert) -> None:
    model, tokenizer = bert
    response = post(client, input=TEXTS)
    got = vectors(response)
    want = np.stack([reference(model, framed(tokenizer, t)) for t in TEXTS])
    assert got.shape == (3, model.config.d_model)
    np.testing.assert_allclose(got, want, atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
    body = response.json()
    n_tokens = sum(len(framed(tokenizer, t)) for t in TEXTS)
    assert body["usage"] == {"prompt_tokens": n_tokens, "total_tokens": n_tokens}
    assert (body["object"], body["model"]) == ("list", "bert")


def test_padding_does_not_change_a_row(client) -> None:
    together = vectors(post(client, input=TEXTS))
    alone = np.concatenate([vectors(post(client, input=t)) for t in TEXTS])
    np.testing.assert_allclose(together, alone, atol=1e-6)


def test_many_batches_keep_the_input_order(client, monkeypatch) -> None:
    texts = TEXTS * 3
    one_batch = vectors(post(client, input=texts))
    monkeypatch.setattr(embeddings, "TOKENS_PER_FORWARD", 16)  # a batch per one or two texts
    np.testing.assert_allclose(vectors(post(client, input=texts)), one_batch, atol=1e-6)


def test_base64_is_little_endian_float32(client) -> None:
    floats = vectors(post(client, input=TEXTS, encoding_format="float"))
    data = post(client, input=TEXTS, encoding_format="base64").json()["data"]
    decoded = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4")
                        for d in data])
    np.testing.assert_array_equal(decoded, floats.astype(np.float32))


def test_token_ids_are_the_input_as_given(client, bert) -> None:
    _, tokenizer = bert
    ids = [framed(tokenizer, t) for t in TEXTS]
    from_text = vectors(post(client, input=TEXTS))
    np.testing.assert_allclose(vectors(post(client, input=ids)), from_text, atol=1e-6)
    np.testing.assert_allclose(vectors(post(client, input=ids[0])), from_text[:1], atol=1e-6)


def test_framing_by_the_tokenizers_post_processor(bert) -> None:
    """A BERT tokenizer that frames text itself is not framed twice."""
    model, tokenizer = bert
    framing = copy.deepcopy(tokenizer)
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    framing.backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    response = post(make_client(model, framing), input=TEXTS[0])
    assert response.json()["usage"]["prompt_tokens"] == len(framed(tokenizer, TEXTS[0]))
    np.testing.assert_allclose(vectors(response)[0],
                               reference(model, framed(tokenizer, TEXTS[0])), atol=2e-5)


def test_requests_are_counted_once(bert) -> None:
    client = make_client(*bert)
    marked: list[bool] = []
    inner = client.app.build_middleware_stack()

    async def watch_state(scope, receive, send) -> None:  # what the app's own middleware reads
        await inner(scope, receive, send)
        marked.append(bool(scope.get("state", {}).get("metrics_recorded")))

    client.app.middleware_stack = watch_state
    metrics = client.app.state.server.metrics
    post(client, input=TEXTS)
    post(client, input="")
    n_tokens = sum(len(framed(bert[1], t)) for t in TEXTS)

    def sample(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    labels = {"endpoint": "/v1/embeddings"}
    assert sample("attnlab_requests_total", **labels, status="200") == 1
    assert sample("attnlab_requests_total", **labels, status="400") == 1
    assert sample("attnlab_prompt_tokens_total") == n_tokens
    assert sample("attnlab_request_latency_seconds_count", **labels) == 1
    assert marked == [True, True]  # so serve.app's middleware does not count them again


def error_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


@pytest.mark.parametrize(("value", "match"), [
    ("", "input is empty"),
    ("   ", "input is empty"),
    ([], "input is empty"),
    (["fine", ""], r"input\[1\] is empty"),
    ([[]], r"input\[0\] is empty"),
    ("apple " * 200, "max_seq_len=128"),
    (list(range(1, 140)), "139 tokens, more than the model's max_seq_len=128"),
    ([[2, 5, 3], [2, 100000, 3]], r"input\[1\] holds token id 100000, outside the vocab"),
    ([2, -1, 3], "token id -1"),
    (5, "input must be a string"),
    (None, "input must be a string"),
    (["text", 3], "input must be a string"),
    ([True, 2], "input must be a string"),
    ([[1.5]], "input must be a string"),
])
def test_bad_input_is_a_400_naming_it(client, value: Any, match: str) -> None:
    error = error_of(post(client, input=value), 400)
    assert error["param"] == "input"
    assert error["type"] == "invalid_request_error"
    assert re.search(match, error["message"]), error["message"]


def test_too_many_inputs(client, monkeypatch) -> None:
    monkeypatch.setattr(embeddings, "MAX_INPUTS", 2)
    assert "more than 2" in error_of(post(client, input=TEXTS), 400)["message"]


def test_unknown_model_is_404(client) -> None:
    response = client.post("/v1/embeddings", json={"model": "gpt-4", "input": "x"})
    error = error_of(response, 404)
    assert (error["code"], error["param"]) == ("model_not_found", "model")


def test_a_generating_model_does_not_support_embeddings(bert) -> None:
    torch.manual_seed(0)
    gpt2 = build_model("gpt2-tiny").eval()
    response = post(make_client(gpt2, bert[1]), input="the apple")
    error = error_of(response, 400)
    assert "does not support embeddings" in error["message"]
    assert "/v1/completions" in error["message"]
    assert error["param"] == "model"


def test_request_fields_are_checked(client) -> None:
    error = error_of(post(client, input="x", encoding_format="int8"), 400)
    assert error["param"] == "encoding_format"
    error = error_of(post(client, input="x", dimensions=32), 400)
    assert "dimensions" in error["message"]
    assert post(client, input="x", user="someone").status_code == 200
