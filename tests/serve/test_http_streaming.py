"""Streaming as OpenAI does it, and continuous batching seen from outside, on a real
`attnlab serve`: every chunk parses, [DONE] comes last, one id throughout, the streamed text
equals the whole response for greedy decoding, usage comes in its own chunk when asked; 32
concurrent greedy requests get what each gets alone; LLaMA and T5 folders serve too."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from server_process import sse_data

from attnlab.serve.process import ServerProcess

COMPLETIONS, CHAT = "/v1/completions", "/v1/chat/completions"
PROMPTS = ["the apple", "stock prices fell", "héllo wörld, ça va", "日本語", "the quick brown fox",
           "the farmer sells red apples", "a", "monday"]


@pytest.fixture(scope="module")
def client(gpt2_server):
    with httpx.Client(base_url=gpt2_server.url, timeout=60) as client:
        yield client


def stream(client: httpx.Client, endpoint: str, body: dict) -> list:
    with client.stream("POST", endpoint, json={**body, "stream": True}) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return sse_data(response.iter_lines())


def whole(client: httpx.Client, endpoint: str, body: dict) -> dict:
    response = client.post(endpoint, json=body)
    assert response.status_code == 200, response.text
    return response.json()


def chunks_of(events: list) -> list[dict]:
    """The JSON chunks, after checking [DONE] ends the stream and comes once."""
    assert events and events[-1] == "[DONE]" and events.count("[DONE]") == 1
    chunks = events[:-1]
    assert len({chunk["id"] for chunk in chunks}) == 1
    return chunks


@pytest.mark.parametrize("prompt", PROMPTS[:4])
def test_streamed_completion_equals_the_whole_one(client, prompt):
    body = {"prompt": prompt, "max_tokens": 20, "temperature": 0, "logprobs": 1}
    chunks = chunks_of(stream(client, COMPLETIONS, body))
    assert all(c["object"] == "text_completion" and len(c["choices"]) == 1 for c in chunks)
    assert chunks[0]["id"].startswith("cmpl-")
    reasons = [c["choices"][0]["finish_reason"] for c in chunks]
    assert reasons[-1] in ("stop", "length") and set(reasons[:-1]) <= {None}
    expected = whole(client, COMPLETIONS, body)["choices"][0]
    assert "".join(c["choices"][0]["text"] for c in chunks) == expected["text"]
    assert reasons[-1] == expected["finish_reason"]
    tokens = [t for c in chunks for t in c["choices"][0]["logprobs"]["tokens"]]
    assert tokens == expected["logprobs"]["tokens"]


def test_streamed_echo_starts_with_the_prompt(client):
    body = {"prompt": "the apple", "max_tokens": 5, "temperature": 0, "echo": True}
    chunks = chunks_of(stream(client, COMPLETIONS, body))
    assert chunks[0]["choices"][0]["text"].startswith("the apple")
    text = "".join(c["choices"][0]["text"] for c in chunks)
    assert text == whole(client, COMPLETIONS, body)["choices"][0]["text"]


def test_streamed_chat_equals_the_whole_one_and_ends_with_usage(client):
    body = {"messages": [{"role": "user", "content": "the apple"}], "max_tokens": 12,
            "temperature": 0, "stream_options": {"include_usage": True}}
    chunks = chunks_of(stream(client, CHAT, body))
    assert chunks[0]["id"].startswith("chatcmpl-")
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    *choice_chunks, last = chunks
    assert last["choices"] == [] and set(last["usage"]) == {"prompt_tokens",
                                                            "completion_tokens", "total_tokens"}
    assert all(c["usage"] is None for c in choice_chunks)
    assert choice_chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in choice_chunks)
    expected = whole(client, CHAT, {k: v for k, v in body.items() if k != "stream_options"})
    assert text == expected["choices"][0]["message"]["content"]
    assert last["usage"] == expected["usage"]


def test_without_include_usage_no_usage_chunk(client):
    chunks = chunks_of(stream(client, COMPLETIONS, {"prompt": "the", "max_tokens": 3}))
    assert all(len(c["choices"]) == 1 and "usage" not in c for c in chunks)


def test_32_concurrent_greedy_requests_equal_their_sequential_outputs(client, gpt2_server):
    bodies = [{"prompt": PROMPTS[i % len(PROMPTS)] + " " * (i // len(PROMPTS)),
               "max_tokens": 8 + i % 5, "temperature": 0, "ignore_eos": i % 2 == 0}
              for i in range(32)]
    alone = [whole(client, COMPLETIONS, body)["choices"][0]["text"] for body in bodies]

    async def together() -> list[str]:
        limits = httpx.Limits(max_connections=32)
        async with httpx.AsyncClient(base_url=gpt2_server.url, timeout=60,
                                     limits=limits) as aclient:
            responses = await asyncio.gather(*(aclient.post(COMPLETIONS, json=body)
                                               for body in bodies))
        assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
        return [r.json()["choices"][0]["text"] for r in responses]

    assert asyncio.run(together()) == alone
    # They did share steps: some step decoded more than one sequence.
    metrics = client.get("/metrics").text
    counts = [float(line.split()[-1]) for line in metrics.splitlines()
              if line.startswith("attnlab_batch_size_bucket") and 'le="1.0"' in line]
    total = [float(line.split()[-1]) for line in metrics.splitlines()
             if line.startswith("attnlab_batch_size_count")]
    assert counts and total and total[0] > counts[0]


@pytest.mark.parametrize("folder", ["llama_dir", "mamba_dir", "t5_dir"])
def test_other_families_complete_chat_and_stream(request, folder):
    path = request.getfixturevalue(folder)
    with ServerProcess(path) as server, httpx.Client(base_url=server.url, timeout=60) as c:
        body = {"prompt": "the apple", "max_tokens": 6, "temperature": 0}
        completion = whole(c, COMPLETIONS, body)
        assert completion["usage"]["completion_tokens"] <= 6
        streamed = chunks_of(stream(c, COMPLETIONS, body))
        assert "".join(x["choices"][0]["text"] for x in streamed) == \
            completion["choices"][0]["text"]
        answer = whole(c, CHAT, {"messages": [{"role": "user", "content": "hi"}],
                                 "max_tokens": 4, "temperature": 0})
        assert answer["choices"][0]["message"]["role"] == "assistant"
        assert c.get("/v1/models").json()["data"][0]["kind"] in ("decoder-only",
                                                                  "encoder-decoder")
