"""serve.metrics: counters, histograms and engine gauges as GET /metrics shows them, parsed back
with prometheus_client's own parser (no real engine or server: a fake `stats()`)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from attnlab.serve.metrics import Metrics


@dataclass
class FakeStats:
    queued: int = 3
    running: int = 5
    max_batch: int = 8
    max_queue: int = 16
    steps: int = 42
    tokens_generated: int = 200
    draining: bool = False


class FakeEngine:
    def __init__(self, stats: FakeStats) -> None:
        self.current = stats
        self.calls = 0

    def stats(self) -> FakeStats:
        self.calls += 1
        return self.current


def scrape(client: TestClient, accept: str | None = None) -> dict[tuple[str, tuple], float]:
    """GET /metrics -> {(sample name, sorted labels): value}."""
    response = client.get("/metrics", headers={"accept": accept} if accept else {})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text)
            for s in family.samples}


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def client(metrics: Metrics) -> TestClient:
    app = FastAPI()
    app.include_router(metrics.router)
    return TestClient(app)


def test_requests_and_tokens_are_counted(metrics: Metrics, client: TestClient) -> None:
    metrics.request_done("/v1/completions", 200, prompt_tokens=5, completion_tokens=16)
    metrics.request_done("/v1/completions", 200, prompt_tokens=7, completion_tokens=4)
    metrics.request_done("/v1/completions", 400)
    metrics.request_done("/v1/embeddings", 200, prompt_tokens=11)
    got = scrape(client)
    requests = "attnlab_requests_total"
    assert got[(requests, (("endpoint", "/v1/completions"), ("status", "200")))] == 2
    assert got[(requests, (("endpoint", "/v1/completions"), ("status", "400")))] == 1
    assert got[(requests, (("endpoint", "/v1/embeddings"), ("status", "200")))] == 1
    assert got[("attnlab_prompt_tokens_total", ())] == 5 + 7 + 11
    assert got[("attnlab_generation_tokens_total", ())] == 16 + 4


def test_latency_histograms(metrics: Metrics, client: TestClient) -> None:
    metrics.request_done("/v1/completions", 200, latency_s=0.3, ttft_s=0.02, tpot_s=0.004)
    metrics.request_done("/v1/completions", 200, latency_s=7.0, ttft_s=0.2, tpot_s=0.03)
    metrics.request_done("/v1/embeddings", 200, latency_s=0.004)
    got = scrape(client)
    completions = ("endpoint", "/v1/completions")
    name = "attnlab_request_latency_seconds"
    assert got[(name + "_count", (completions,))] == 2
    assert got[(name + "_sum", (completions,))] == pytest.approx(7.3)
    assert got[(name + "_bucket", (completions, ("le", "0.5")))] == 1
    assert got[(name + "_bucket", (completions, ("le", "10.0")))] == 2
    assert got[(name + "_bucket", (completions, ("le", "+Inf")))] == 2
    assert got[(name + "_bucket", (("endpoint", "/v1/embeddings"), ("le", "0.005")))] == 1
    assert got[("attnlab_time_to_first_token_seconds_count", ())] == 2
    assert got[("attnlab_time_to_first_token_seconds_bucket", (("le", "0.025"),))] == 1
    assert got[("attnlab_time_per_output_token_seconds_sum", ())] == pytest.approx(0.034)
    assert got[("attnlab_time_per_output_token_seconds_bucket", (("le", "0.005"),))] == 1


def test_missing_timings_are_not_observed(metrics: Metrics, client: TestClient) -> None:
    metrics.request_done("/v1/chat/completions", 400)  # an error: no latency figures
    got = scrape(client)
    assert got.get(("attnlab_time_to_first_token_seconds_count", ()), 0) == 0
    key = ("attnlab_request_latency_seconds_count", (("endpoint", "/v1/chat/completions"),))
    assert key not in got


def test_batch_size_histogram(metrics: Metrics, client: TestClient) -> None:
    for size in (1, 3, 3, 32):
        metrics.observe_step(size)
    got = scrape(client)
    assert got[("attnlab_batch_size_count", ())] == 4
    assert got[("attnlab_batch_size_sum", ())] == 39
    assert got[("attnlab_batch_size_bucket", (("le", "1.0"),))] == 1
    assert got[("attnlab_batch_size_bucket", (("le", "4.0"),))] == 3
    assert got[("attnlab_batch_size_bucket", (("le", "16.0"),))] == 3
    assert got[("attnlab_batch_size_bucket", (("le", "32.0"),))] == 4


def test_engine_gauges_are_read_on_each_scrape(metrics: Metrics, client: TestClient) -> None:
    engine = FakeEngine(FakeStats())
    metrics.bind_engine(engine)
    got = scrape(client)
    assert got[("attnlab_queue_depth", ())] == 3
    assert got[("attnlab_running_requests", ())] == 5
    assert got[("attnlab_max_batch_size", ())] == 8
    assert got[("attnlab_max_queue_size", ())] == 16
    assert got[("attnlab_engine_steps_total", ())] == 42
    assert got[("attnlab_draining", ())] == 0
    engine.current = FakeStats(queued=0, running=1, steps=50, draining=True)
    got = scrape(client)
    assert got[("attnlab_queue_depth", ())] == 0
    assert got[("attnlab_running_requests", ())] == 1
    assert got[("attnlab_engine_steps_total", ())] == 50
    assert got[("attnlab_draining", ())] == 1
    assert engine.calls == 2  # once per scrape, not once per gauge


def test_without_an_engine_gauges_are_zero(metrics: Metrics, client: TestClient) -> None:
    got = scrape(client)
    assert got[("attnlab_queue_depth", ())] == 0
    assert got[("attnlab_running_requests", ())] == 0
    metrics.bind_engine(FakeEngine(FakeStats()))
    metrics.bind_engine(None)
    assert scrape(client)[("attnlab_running_requests", ())] == 0


def test_each_instance_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()  # the global registry would refuse a second set
    first.request_done("/v1/completions", 200, prompt_tokens=3)
    app = FastAPI()
    app.include_router(second.router)
    got = scrape(TestClient(app))
    assert got[("attnlab_prompt_tokens_total", ())] == 0
    assert not any(name == "attnlab_requests_total" for name, _ in got)


def test_openmetrics_when_asked(metrics: Metrics, client: TestClient) -> None:
    metrics.request_done("/v1/completions", 200)
    response = client.get("/metrics", headers={"accept": "application/openmetrics-text"})
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")
    assert 'attnlab_requests_total{endpoint="/v1/completions",status="200"} 1.0' in response.text
