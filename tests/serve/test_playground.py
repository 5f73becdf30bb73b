"""The playground (serve/playground.py) and the store it reads (serve/recent.py).

The attention endpoint and the page are tested with FastAPI's TestClient over a minimal app
holding a tiny model with random weights: each head's weights over the keys sum to 1 and are the
row `viz.extract` gives for the same text. The page itself is tested in headless Chromium
against a real `attnlab serve` (tests/browser.py; skipped where Chromium is missing): a prompt
typed, the streamed text seen, the attention view drawn and redrawn for another layer and head,
no console error.
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
from types import SimpleNamespace

import pytest
import torch
from browser import Page, start_browser
from fastapi import FastAPI
from fastapi.testclient import TestClient

from attnlab.models import build_model
from attnlab.serve.errors import install_error_handlers
from attnlab.serve.playground import ASSETS, read_asset, render_page, router
from attnlab.serve.process import ServerProcess
from attnlab.serve.recent import RecentCompletions
from attnlab.viz.extract import extract_maps, load_model_and_tokenizer, seq2seq_maps

torch.set_num_threads(1)
TEXT = "the farmer sells red apples"


def _client(model, tokenizer, capacity: int = 4) -> TestClient:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    app.state.server = SimpleNamespace(model=model, tokenizer=tokenizer, model_id="tiny",
                                       recent=RecentCompletions(capacity))
    return TestClient(app)


@pytest.fixture(scope="module")
def gpt2(gpt2_dir):
    return load_model_and_tokenizer(gpt2_dir)


# ---- the recent completions store ----

def test_recent_keeps_the_last_ones_and_copies() -> None:
    recent = RecentCompletions(2)
    prompt, output = [1, 2], [3]
    recent.add("a", prompt, output)
    output.append(9)  # the caller's list changes after the add: the store kept its own copy
    recent.add("b", [4], [5])
    assert recent.get("a") == ([1, 2], [3]) and len(recent) == 2
    recent.add("a", [1, 2], [3])  # added again: now the newest, so "b" goes first
    recent.add("c", [6], [7])
    assert "b" not in recent and recent.get("b") is None
    assert recent.get("a") == ([1, 2], [3]) and recent.get("c") == ([6], [7])
    got = recent.get("c")
    got[0].append(0)  # nor can a reader change what is kept
    assert recent.get("c") == ([6], [7])
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="capacity must be an int >= 1"):
            RecentCompletions(bad)  # type: ignore[arg-type]


def test_recent_is_bounded_under_concurrent_adds() -> None:
    recent = RecentCompletions(8)

    def add_many(worker: int) -> None:
        for i in range(200):
            recent.add(f"{worker}-{i}", [worker], [i])
            assert len(recent) <= 8

    threads = [threading.Thread(target=add_many, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    assert len(recent) == 8
    for worker in range(4):  # each worker's own last add is either kept or evicted, whole
        assert recent.get(f"{worker}-199") in (None, ([worker], [199]))


# ---- GET /v1/attention/{id} ----

def test_attention_of_the_last_token_matches_viz(gpt2) -> None:
    model, tokenizer = gpt2
    ids = tokenizer.encoding(TEXT).ids
    assert len(ids) >= 5
    prompt, output = ids[:-3], ids[-3:]  # as if the model had written the last three tokens
    client = _client(model, tokenizer)
    client.app.state.server.recent.add("cmpl-1", prompt, output)
    response = client.get("/v1/attention/cmpl-1")
    assert response.status_code == 200, response.text
    body = response.json()
    query = len(ids) - 2  # the position that read the second-to-last token and wrote the last
    config = model.config
    assert (body["id"], body["model"], body["view"]) == ("cmpl-1", "tiny",
                                                         "causal self-attention")
    assert (body["query"], body["layers"], body["heads"]) == (query, config.n_layers,
                                                              config.n_heads)
    view = extract_maps(model, tokenizer, TEXT).views[0]  # what `attnlab viz` draws
    assert body["tokens"] == list(view.key_tokens[: query + 1])
    assert body["query_token"] == view.key_tokens[query]
    assert body["predicted"] == view.key_tokens[query + 1]
    weights = torch.tensor(body["weights"], dtype=torch.float64)  # (L, H, S)
    assert weights.shape == (config.n_layers, config.n_heads, query + 1)
    assert torch.allclose(weights.sum(-1), torch.ones(config.n_layers, config.n_heads,
                          dtype=torch.float64), atol=1e-3)
    assert torch.allclose(weights, view.weights[:, :, query, : query + 1].double(), atol=1e-4)
    assert weights.min() >= 0 and len(response.text) < 20_000  # rounded, not float noise


def test_attention_of_an_encoder_decoder_is_its_cross_attention(t5_dir) -> None:
    model, tokenizer = load_model_and_tokenizer(t5_dir)
    prompt = [*tokenizer.encoding(TEXT).ids, model.config.eos_token_id]
    output = tokenizer.encoding("red apples").ids
    client = _client(model, tokenizer)
    client.app.state.server.recent.add("cmpl-t5", prompt, output)
    body = client.get("/v1/attention/cmpl-t5").json()
    cross = next(v for v in seq2seq_maps(model, tokenizer, prompt, output).views
                 if v.kind == "cross")
    assert body["view"] == "cross-attention" and body["query"] == len(output) - 1
    assert body["tokens"] == list(cross.key_tokens) and len(body["tokens"]) == len(prompt)
    weights = torch.tensor(body["weights"], dtype=torch.float64)  # (L, H, source)
    assert torch.allclose(weights.sum(-1), torch.ones_like(weights.sum(-1)), atol=1e-3)
    assert torch.allclose(weights, cross.weights[:, :, -1].double(), atol=1e-4)
    assert body["predicted"] == cross.query_tokens[-1]


def test_unknown_and_evicted_ids_are_404(gpt2) -> None:
    client = _client(*gpt2, capacity=2)
    recent = client.app.state.server.recent
    for i in range(3):
        recent.add(f"cmpl-{i}", [5, 6], [7])
    for missing in ("cmpl-0", "nope"):  # evicted by the third, never there
        response = client.get(f"/v1/attention/{missing}")
        assert response.status_code == 404
        error = response.json()["error"]
        assert missing in error["message"] and "last 2 completions" in error["message"]
        assert error["type"] == "invalid_request_error" and error["param"] == "completion_id"
    assert client.get("/v1/attention/cmpl-2").status_code == 200


def test_a_model_without_attention_is_400(gpt2) -> None:
    _, tokenizer = gpt2
    torch.manual_seed(0)
    mamba = build_model("mamba-tiny", vocab_size=tokenizer.vocab_size).eval()
    client = _client(mamba, tokenizer)
    client.app.state.server.recent.add("cmpl-m", [5, 6], [7])
    response = client.get("/v1/attention/cmpl-m")
    assert response.status_code == 400
    assert "mamba" in response.json()["error"]["message"]
    client = _client(*gpt2)
    client.app.state.server.recent.add("cmpl-empty", [5, 6], [])  # EOS came first
    response = client.get("/v1/attention/cmpl-empty")
    assert response.status_code == 400 and "no tokens" in response.json()["error"]["message"]


# ---- GET / ----

def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_page_is_self_contained_with_a_strict_csp(gpt2) -> None:
    response = _client(*gpt2).get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith(
        "text/html")
    page = response.text
    template, style, script = (read_asset(name) for name in ASSETS)
    assert page == render_page()[0]
    assert f"<style>{style}</style>" in page and f"<script>{script}</script>" in page
    assert page.startswith(template.split("@STYLE@", 1)[0]) and "@SCRIPT@" not in page
    csp = {part.split(" ", 1)[0]: part.split(" ", 1)[1:] for part in
           response.headers["content-security-policy"].split("; ")}
    assert csp["default-src"] == ["'none'"] and csp["connect-src"] == ["'self'"]
    assert csp["script-src"] == [_sha256(script)] and csp["style-src"] == [_sha256(style)]
    assert "unsafe" not in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    # nothing loaded from elsewhere: no URL, no tag or attribute that would fetch one
    assert not re.search(r"https?:|ftp:|//[\w.-]+\.[a-z]{2,}", page)
    assert not re.search(r"<(link|iframe|object|embed|img|base)\b", page, re.I)
    assert not re.search(r"\b(src|href|style)\s*=|@import|url\(", page)
    assert "innerHTML" not in page and "outerHTML" not in page and "document.write" not in page
    assert page.lower().count("<script") == 1 and page.lower().count("<style") == 1
    assert len(script.splitlines()) < 300


def test_page_labels_every_control(gpt2) -> None:
    page = _client(*gpt2).get("/").text
    ids = re.findall(r'<(?:input|textarea|select)\b[^>]*\bid="([^"]+)"', page)
    assert {"prompt", "max-tokens", "temperature", "top-p", "top-k", "seed", "layer-select",
            "head-select"} <= set(ids)
    for control in ids:  # inside a <label>, or named by one
        inside = re.search(r'<label>[^<]*<(?:input|select)\b[^>]*id="' + control, page)
        assert inside or f'<label for="{control}"' in page, control


# ---- the page in headless Chromium, against a real server ----

@pytest.fixture(scope="module")
def browser():
    b = start_browser("the playground's browser test")
    yield b
    b.close()


def test_playground_streams_and_shows_attention(browser, gpt2_dir) -> None:
    with ServerProcess(gpt2_dir) as server:
        page = Page(browser, width=1200, height=900)
        page.goto(server.url + "/")
        page.wait_until("document.getElementById('model-id').textContent === 'gpt2-tiny'",
                        what="the model id from GET /v1/models")
        page.type_text("#prompt", "the farmer sells")
        page.type_text("#max-tokens", "12")
        page.type_text("#temperature", "0")
        page.click("#generate")
        # the text arrives while the request runs; then the attention view is drawn
        page.wait_until("document.getElementById('output-text').textContent.length > 0",
                        timeout=60, what="streamed text")
        page.wait_until("window.attnPlayground.state.attentionDraws > 0", timeout=60,
                        what="the attention view")
        assert page.js("document.getElementById('error').hidden") is True, page.js(
            "document.getElementById('error').textContent")
        assert page.js("document.getElementById('output-prompt').textContent") == \
            "the farmer sells"
        state = page.js("(() => { const a = window.attnPlayground.state.attention;"
                        " return {query: a.query, n: a.tokens.length, layers: a.layers,"
                        " heads: a.heads}; })()")
        chips = page.js("document.querySelectorAll('#chips .chip:not(.next)').length")
        assert chips == state["n"] == state["query"] + 1 > 3
        assert page.js("document.querySelectorAll('#head-select option').length") == \
            state["heads"] + 1  # mean of heads first
        assert page.js("document.getElementById('head-select').value") == "mean"
        shown = page.js("Array.from(document.querySelectorAll('#chips .chip:not(.next)'),"
                        " e => Number(e.dataset.weight))")
        assert sum(shown) == pytest.approx(1.0, abs=2e-3)
        bars = page.js("document.getElementById('bars').toDataURL()")
        explain = page.js("document.getElementById('explain').textContent")
        page.choose("#head-select", "0")
        page.choose("#layer-select", "0")
        assert page.js("window.attnPlayground.state.head") == 0
        assert page.js("window.attnPlayground.state.layer") == 0
        after = page.js("Array.from(document.querySelectorAll('#chips .chip:not(.next)'),"
                        " e => Number(e.dataset.weight))")
        assert after != shown and sum(after) == pytest.approx(1.0, abs=2e-3)
        assert page.js("document.getElementById('bars').toDataURL()") != bars
        assert page.js("document.getElementById('explain').textContent") != explain
        assert "Layer 1, head 1" in page.js("document.getElementById('explain').textContent")
        assert page.errors() == []
        assert all(url.startswith(server.url) for url in page.requests())
