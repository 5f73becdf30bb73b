"""The OpenAI-compatible endpoints of a real `attnlab serve` (uvicorn in a subprocess, httpx on
127.0.0.1): response shapes, usage, prompt forms, stop strings, echo and both logprobs shapes,
/v1/models, /health, /metrics counting, and every bad input of the issue's item 4 answered with
its 4xx in OpenAI's error shape (never a 500)."""

from __future__ import annotations

import math
import re

import httpx
import pytest

from attnlab.io import load_tokenizer
from attnlab.serve.process import ServerProcess

ERROR_KEYS = {"message", "type", "param", "code"}


@pytest.fixture(scope="module")
def client(gpt2_server):
    with httpx.Client(base_url=gpt2_server.url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def tokenizer(gpt2_dir):
    return load_tokenizer(gpt2_dir)


def complete(client, **body) -> dict:
    response = client.post("/v1/completions", json={"temperature": 0, **body})
    assert response.status_code == 200, response.text
    return response.json()


def chat(client, **body) -> dict:
    messages = [{"role": "user", "content": "the apple"}]
    response = client.post("/v1/chat/completions",
                           json={"messages": messages, "temperature": 0, **body})
    assert response.status_code == 200, response.text
    return response.json()


def assert_usage(usage: dict, prompt_tokens: int, most: int) -> None:
    assert usage["prompt_tokens"] == prompt_tokens
    assert 0 <= usage["completion_tokens"] <= most
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_health_and_models(client, gpt2_dir):
    assert client.get("/health").json() == {"status": "ok"}
    listing = client.get("/v1/models").json()
    assert listing["object"] == "list" and len(listing["data"]) == 1
    card = listing["data"][0]
    assert card["id"] == gpt2_dir.name and card["object"] == "model"
    assert card["owned_by"] == "attnlab" and card["max_model_len"] == 128
    assert isinstance(card["created"], int)
    assert client.get(f"/v1/models/{gpt2_dir.name}").json() == card
    missing = client.get("/v1/models/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"


def test_completion_shape_and_usage(client, tokenizer, gpt2_dir):
    body = complete(client, prompt="the apple", max_tokens=5, model=gpt2_dir.name)
    assert re.fullmatch(r"cmpl-[0-9a-f]+", body["id"]) and body["object"] == "text_completion"
    assert body["model"] == gpt2_dir.name and isinstance(body["created"], int)
    (choice,) = body["choices"]
    assert choice["index"] == 0 and isinstance(choice["text"], str)
    assert choice["logprobs"] is None and choice["finish_reason"] in ("stop", "length")
    assert_usage(body["usage"], len(tokenizer.encoding("the apple").ids), 5)
    if choice["finish_reason"] == "length":
        assert body["usage"]["completion_tokens"] == 5


def test_prompt_forms_give_the_same_greedy_text(client, tokenizer):
    ids = tokenizer.encoding("the farmer sells").ids
    texts = {complete(client, prompt=prompt, max_tokens=6)["choices"][0]["text"]
             for prompt in ("the farmer sells", ["the farmer sells"], ids, [ids])}
    assert len(texts) == 1


def test_seed_gives_the_same_sample(client):
    def sample(seed):
        return complete(client, prompt="the", max_tokens=12, temperature=1.0, seed=seed,
                        ignore_eos=True)["choices"][0]["text"]

    assert sample(7) == sample(7)
    assert len({sample(seed) for seed in range(4)}) > 1  # the seed does choose the sample


def test_stop_string_ends_the_text_before_it(client):
    full = complete(client, prompt="the quick", max_tokens=12, ignore_eos=True)
    text = full["choices"][0]["text"]
    assert len(text) >= 4, text
    stop = text[len(text) // 2: len(text) // 2 + 2]
    body = complete(client, prompt="the quick", max_tokens=12, ignore_eos=True,
                    stop=[stop, "never in the text \u2603"])
    assert body["choices"][0]["text"] == text[: text.index(stop)]
    assert body["choices"][0]["finish_reason"] == "stop"


def test_echo_with_logprobs(client, tokenizer):
    body = complete(client, prompt="the apple", max_tokens=4, echo=True, logprobs=2,
                    ignore_eos=True)
    (choice,) = body["choices"]
    assert choice["text"].startswith("the apple")
    logprobs = choice["logprobs"]
    prompt_tokens = len(tokenizer.encoding("the apple").ids)
    n = prompt_tokens + body["usage"]["completion_tokens"]
    assert set(logprobs) == {"tokens", "token_logprobs", "top_logprobs", "text_offset"}
    assert all(len(logprobs[key]) == n for key in logprobs)
    assert logprobs["token_logprobs"][0] is None and logprobs["top_logprobs"][0] is None
    assert logprobs["text_offset"][0] == 0 and logprobs["text_offset"] == sorted(
        logprobs["text_offset"])
    for value, top in zip(logprobs["token_logprobs"][1:], logprobs["top_logprobs"][1:],
                          strict=True):
        assert value <= 0 and 1 <= len(top) <= 2 and all(v <= 0 for v in top.values())
    # Greedy: each generated token is its step's best, so its log-prob is the top one.
    for value, top in zip(logprobs["token_logprobs"][prompt_tokens:],
                          logprobs["top_logprobs"][prompt_tokens:], strict=True):
        assert math.isclose(value, max(top.values()), abs_tol=1e-5)


def test_chat_completion_shape(client, gpt2_dir):
    body = chat(client, max_tokens=6)
    assert re.fullmatch(r"chatcmpl-[0-9a-f]+", body["id"]) and body["object"] == "chat.completion"
    (choice,) = body["choices"]
    assert choice["message"]["role"] == "assistant"
    assert isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] in ("stop", "length") and choice["logprobs"] is None
    assert body["usage"]["completion_tokens"] <= 6


def test_chat_without_max_tokens_may_use_the_whole_context(client):
    body = chat(client, ignore_eos=True)
    usage = body["usage"]
    assert body["choices"][0]["finish_reason"] == "length"
    assert usage["total_tokens"] == 128  # gpt2-tiny's max_seq_len


def test_chat_logprobs_shape(client):
    body = chat(client, max_tokens=5, logprobs=True, top_logprobs=2, ignore_eos=True)
    content = body["choices"][0]["logprobs"]["content"]
    assert len(content) == body["usage"]["completion_tokens"] == 5
    for entry in content:
        assert set(entry) == {"token", "logprob", "bytes", "top_logprobs"}
        assert all(isinstance(b, int) and 0 <= b < 256 for b in entry["bytes"])
        assert len(entry["top_logprobs"]) == 2
        assert math.isclose(entry["logprob"], entry["top_logprobs"][0]["logprob"], abs_tol=1e-5)
        assert all(set(top) == {"token", "logprob", "bytes"} for top in entry["top_logprobs"])


def test_neutral_values_of_unsupported_parameters_are_accepted(client):
    body = complete(client, prompt="the", max_tokens=2, frequency_penalty=0, presence_penalty=0,
                    logit_bias={}, best_of=1, n=1, user="someone", top_k=-1)
    assert body["usage"]["completion_tokens"] <= 2


COMPLETIONS, CHAT = "/v1/completions", "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "hi"}]
# (endpoint, JSON body, status, the parameter the error names)
BAD_INPUTS = {
    "negative temperature": (COMPLETIONS, {"prompt": "x", "temperature": -1}, 400, "temperature"),
    "top_p 0": (COMPLETIONS, {"prompt": "x", "top_p": 0}, 400, "top_p"),
    "top_p above 1": (CHAT, {"messages": MESSAGES, "top_p": 1.5}, 400, "top_p"),
    "max_tokens 0": (COMPLETIONS, {"prompt": "x", "max_tokens": 0}, 400, "max_tokens"),
    "max_tokens negative": (CHAT, {"messages": MESSAGES, "max_tokens": -3}, 400, "max_tokens"),
    "max_tokens over the limit": (COMPLETIONS, {"prompt": "x", "max_tokens": 10_000}, 400,
                                  "max_tokens"),
    "prompt over the limit": (COMPLETIONS, {"prompt": "apple " * 200}, 400, "prompt"),
    "token id outside the vocabulary": (COMPLETIONS, {"prompt": [1, 10**6]}, 400, "prompt"),
    "empty prompt list": (COMPLETIONS, {"prompt": []}, 400, "prompt"),
    "two prompts": (COMPLETIONS, {"prompt": ["a", "b"]}, 400, "prompt"),
    "prompt of the wrong type": (COMPLETIONS, {"prompt": 5}, 400, "prompt"),
    "missing prompt": (COMPLETIONS, {"max_tokens": 3}, 400, "prompt"),
    "temperature as a string": (COMPLETIONS, {"prompt": "x", "temperature": "hot"}, 400,
                                "temperature"),
    "max_tokens not an integer": (COMPLETIONS, {"prompt": "x", "max_tokens": 1.5}, 400,
                                  "max_tokens"),
    "stream not a bool": (COMPLETIONS, {"prompt": "x", "stream": "yes"}, 400, "stream"),
    "n 2": (COMPLETIONS, {"prompt": "x", "n": 2}, 400, "n"),
    "five stop strings": (COMPLETIONS, {"prompt": "x", "stop": list("abcde")}, 400, "stop"),
    "logprobs above the most": (COMPLETIONS, {"prompt": "x", "logprobs": 21}, 400, "logprobs"),
    "negative logprobs": (COMPLETIONS, {"prompt": "x", "logprobs": -1}, 400, "logprobs"),
    "top_logprobs above the most": (CHAT, {"messages": MESSAGES, "logprobs": True,
                                           "top_logprobs": 21}, 400, "top_logprobs"),
    "top_logprobs without logprobs": (CHAT, {"messages": MESSAGES, "top_logprobs": 2}, 400,
                                      "top_logprobs"),
    "unknown parameter": (COMPLETIONS, {"prompt": "x", "bogus_knob": 1}, 400, "bogus_knob"),
    "unknown model": (COMPLETIONS, {"prompt": "x", "model": "gpt-4"}, 404, "model"),
    "unknown model (chat)": (CHAT, {"messages": MESSAGES, "model": "gpt-4"}, 404, "model"),
    "empty messages": (CHAT, {"messages": []}, 400, "messages"),
    "missing messages": (CHAT, {"max_tokens": 3}, 400, "messages"),
    "messages not a list": (CHAT, {"messages": "hi"}, 400, "messages"),
    "unknown role": (CHAT, {"messages": [{"role": "wizard", "content": "hi"}]}, 400, "messages"),
    "stream_options without stream": (CHAT, {"messages": MESSAGES,
                                             "stream_options": {"include_usage": True}}, 400,
                                      "stream_options"),
    "a penalty this server would ignore": (COMPLETIONS, {"prompt": "x", "presence_penalty": 1},
                                           400, "presence_penalty"),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_bad_input_is_a_4xx_in_openais_shape(client, case):
    endpoint, body, status, param = BAD_INPUTS[case]
    response = client.post(endpoint, json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == ERROR_KEYS and error["message"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    if param in ("max_tokens", "prompt") and "limit" in case:
        assert "128" in error["message"] and error["code"] == "context_length_exceeded"
    if status == 404:
        assert error["code"] == "model_not_found"
    if param == "bogus_knob":
        assert "bogus_knob" in error["message"]


@pytest.mark.parametrize("content, content_type", [
    (b'{"prompt": "x",', "application/json"),     # not JSON
    (b"[1, 2]", "application/json"),              # JSON, not an object
    (b"", "application/json"),                     # nothing
    (b'{"prompt": "x"}', "text/plain"),            # JSON sent as something else
])
def test_unreadable_body_is_a_400(client, content, content_type):
    response = client.post(COMPLETIONS, content=content, headers={"Content-Type": content_type})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == ERROR_KEYS and error["type"] == "invalid_request_error"


def test_unknown_route_and_method_in_openais_shape(client):
    missing = client.get("/v1/nothing-here")
    assert missing.status_code == 404 and set(missing.json()["error"]) == ERROR_KEYS
    wrong = client.get(COMPLETIONS)
    assert wrong.status_code == 405 and set(wrong.json()["error"]) == ERROR_KEYS


def test_metrics_count_answers_and_refusals(client):
    complete(client, prompt="the", max_tokens=2)
    client.post(COMPLETIONS, json={"prompt": "x", "temperature": -1})
    text = client.get("/metrics").text

    def count(status: int) -> float:
        label = f'endpoint="/v1/completions",status="{status}"'
        match = re.search(r"attnlab_requests_total\{" + label + r"\} (\S+)", text)
        return float(match.group(1)) if match else 0.0

    assert count(200) >= 1 and count(400) >= 1
    assert re.search(r"attnlab_generation_tokens_total [1-9]", text)


def test_an_encoder_folder_does_not_complete(bert_dir):
    with ServerProcess(bert_dir) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        assert c.get("/health").status_code == 200
        card = c.get("/v1/models").json()["data"][0]
        assert card["id"] == bert_dir.name
        for endpoint, body in ((COMPLETIONS, {"prompt": "x"}), (CHAT, {"messages": MESSAGES})):
            response = c.post(endpoint, json=body)
            assert response.status_code == 400, response.text
            error = response.json()["error"]
            assert error["param"] == "model" and "/v1/embeddings" in error["message"]
