"""The server's limits and its life, on a real `attnlab serve` whose requests stay busy for
seconds (gpt2-tiny with a 16k context, ignore_eos): a full queue is a 429 with Retry-After, a
client that goes away (streaming or not) frees its slot at once, a request past
--request-timeout is a 408 (an error event in a stream), and SIGTERM lets an in-flight stream
finish, refuses new connections and exits 0 within the drain bound."""

from __future__ import annotations

import re
import time

import httpx
import pytest
from server_process import gpt2_folder, sse_data

from attnlab.serve.process import ServerProcess

COMPLETIONS = "/v1/completions"
LONG = 16_000  # tokens: ~15 s of decoding here, far longer than any wait below
BUSY = {"prompt": "the apple", "max_tokens": LONG, "ignore_eos": True, "temperature": 0}
WAIT_S = 8.0  # the bound on anything that should happen "at once"


@pytest.fixture(scope="module")
def long_dir(serve_root):
    return gpt2_folder(serve_root / "gpt2-long", max_seq_len=16_384)


@pytest.fixture(scope="module")
def one_slot(long_dir):
    """One sequence at a time, one more waiting."""
    with ServerProcess(long_dir, "--max-batch", "1", "--max-queue", "1") as server:
        yield server


def metric(url: str, name: str, labels: str = "") -> float:
    text = httpx.get(url + "/metrics", timeout=10).text
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def wait_until(condition, what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.05)


def idle(url: str) -> bool:
    return (metric(url, "attnlab_running_requests") == 0
            and metric(url, "attnlab_queue_depth") == 0)


def closed_by_client(url: str) -> float:
    return metric(url, "attnlab_requests_total", '{endpoint="/v1/completions",status="499"}')


def test_full_queue_is_a_429_and_closed_streams_free_their_slots(one_slot):
    url = one_slot.url
    with httpx.Client(base_url=url, timeout=30) as first, \
            httpx.Client(base_url=url, timeout=30) as second:
        with first.stream("POST", COMPLETIONS, json={**BUSY, "stream": True}) as running:
            # (kept: an iterator dropped half-read closes httpx's connection)
            running_lines = running.iter_lines()
            assert next(running_lines).startswith("data: ")  # decoding
            with second.stream("POST", COMPLETIONS, json={**BUSY, "stream": True}) as queued:
                assert queued.status_code == 200
                wait_until(lambda: metric(url, "attnlab_queue_depth") == 1, "one queued")
                refused = httpx.post(url + COMPLETIONS, json={"prompt": "x", "max_tokens": 2},
                                     timeout=30)
                assert refused.status_code == 429, refused.text
                assert int(refused.headers["Retry-After"]) >= 1
                error = refused.json()["error"]
                assert error["type"] == "rate_limit_error" and error["message"]
        # Both clients went away long before their requests could end by themselves.
        wait_until(lambda: idle(url), "the slot and the queue freed")
    answered = httpx.post(url + COMPLETIONS, json={"prompt": "x", "max_tokens": 2}, timeout=30)
    assert answered.status_code == 200, answered.text


def test_a_client_that_stops_waiting_frees_its_slot(one_slot):
    url = one_slot.url
    wait_until(lambda: idle(url), "idle before the test")
    before = closed_by_client(url)
    with pytest.raises(httpx.ReadTimeout):  # the client gives up and closes its connection
        httpx.post(url + COMPLETIONS, json=BUSY, timeout=httpx.Timeout(30, read=1.5))
    wait_until(lambda: idle(url), "the abandoned request's slot freed")
    assert closed_by_client(url) == before + 1


def test_request_timeout_is_a_408(long_dir):
    with ServerProcess(long_dir, "--request-timeout", "1") as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        response = client.post(COMPLETIONS, json=BUSY)
        assert response.status_code == 408, response.text
        assert response.json()["error"]["type"] == "timeout_error"
        with client.stream("POST", COMPLETIONS, json={**BUSY, "stream": True}) as streamed:
            assert streamed.status_code == 200
            events = sse_data(streamed.iter_lines())
        assert events[-1] == "[DONE]" and events[-2]["error"]["type"] == "timeout_error"
        assert all("choices" in event for event in events[:-2])


def test_sigterm_drains_in_flight_streams_then_exits_0(long_dir):
    with ServerProcess(long_dir) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        body = {**BUSY, "max_tokens": 1500, "stream": True,
                "stream_options": {"include_usage": True}}
        with c.stream("POST", COMPLETIONS, json=body) as response:
            lines = response.iter_lines()
            first = next(lines)
            server.terminate()

            def refused() -> bool:
                try:
                    httpx.get(server.url + "/health", timeout=2)
                except httpx.ConnectError:
                    return True
                return False

            wait_until(refused, "new connections refused")
            events = sse_data([first, *lines])
        assert events[-1] == "[DONE]"
        assert events[-2]["usage"]["completion_tokens"] == 1500
        assert events[-3]["choices"][0]["finish_reason"] == "length"
        assert server.wait(timeout=30) == 0


def test_sigterm_bounds_the_drain(long_dir):
    with ServerProcess(long_dir, "--drain-timeout", "1") as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        with client.stream("POST", COMPLETIONS, json={**BUSY, "stream": True}) as response:
            lines = response.iter_lines()
            next(lines)
            server.terminate()
            with pytest.raises(httpx.HTTPError):  # cut off: the drain does not wait ~15 s
                for _ in lines:
                    pass
        assert server.wait(timeout=WAIT_S + 10) == 0
