"""The server's Prometheus metrics and `GET /metrics` (the Prometheus text exposition format,
or OpenMetrics when the scraper asks for it).

    metrics = Metrics()                        # its own registry: many apps can live in a process
    app.include_router(metrics.router)
    metrics.bind_engine(engine)                # queue depth and running requests, read on scrape
    engine = Engine(..., on_step=metrics.observe_step)
    metrics.request_done("/v1/completions", 200, prompt_tokens=5, completion_tokens=16,
                         latency_s=0.8, ttft_s=0.05, tpot_s=0.05)

Names follow Prometheus' conventions (base units, `_total` counters) with the `attnlab_` prefix;
what they count is the vLLM server's set: requests by endpoint and status, prompt and generated
tokens, the engine's queue and running requests, the batch size of each decode step, and
latency, time to first token and time per output token as histograms.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from fastapi import APIRouter, Request, Response
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

PREFIX = "attnlab_"
# Seconds, for CPU serving: 5 ms (a tiny model's short request) .. 120 s (a long completion).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0,
                   60.0, 120.0)
# Time per output token: one decode step of a batch, 1 ms .. 5 s.
TOKEN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Sequences decoded together in one step (powers of two up to the largest --max-batch sensible).
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class StatsSource(Protocol):
    """What the gauges read: the engine's `stats()` (queued, running, max_batch, max_queue,
    steps, draining)."""

    def stats(self) -> Any: ...


class EngineCollector:
    """Gauges read from the bound engine when scraped, so they are never stale; 0 without one
    (an encoder-only server has no engine)."""

    def __init__(self) -> None:
        self.engine: StatsSource | None = None

    def describe(self) -> Iterator[Metric]:
        return self._families(None)

    def collect(self) -> Iterator[Metric]:
        return self._families(self.engine.stats() if self.engine is not None else None)

    def _families(self, stats: Any) -> Iterator[Metric]:
        def value(field: str) -> float:
            return float(getattr(stats, field)) if stats is not None else 0.0

        yield GaugeMetricFamily(PREFIX + "queue_depth", "Requests waiting for a batch slot.",
                                value=value("queued"))
        yield GaugeMetricFamily(PREFIX + "running_requests",
                                "Requests being decoded in the batch now.", value=value("running"))
        yield GaugeMetricFamily(PREFIX + "max_batch_size",
                                "Most sequences decoded together (--max-batch).",
                                value=value("max_batch"))
        yield GaugeMetricFamily(PREFIX + "max_queue_size",
                                "Most requests waiting before a 429 (--max-queue).",
                                value=value("max_queue"))
        yield GaugeMetricFamily(PREFIX + "draining",
                                "1 while the server finishes in-flight requests before exiting.",
                                value=value("draining"))
        yield CounterMetricFamily(PREFIX + "engine_steps", "Decode steps the engine has run.",
                                  value=value("steps"))


class Metrics:
    """The server's metrics in their own `CollectorRegistry` (never the process-global one),
    and `router`, which serves them at GET /metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._engine = EngineCollector()
        self.registry.register(self._engine)
        self.requests = Counter(PREFIX + "requests", "HTTP API requests by endpoint and status.",
                                ["endpoint", "status"], registry=self.registry)
        self.prompt_tokens = Counter(PREFIX + "prompt_tokens", "Prompt tokens read.",
                                     registry=self.registry)
        self.generation_tokens = Counter(PREFIX + "generation_tokens", "Tokens generated.",
                                         registry=self.registry)
        self.batch_size = Histogram(PREFIX + "batch_size",
                                    "Sequences decoded together in one engine step.",
                                    buckets=BATCH_BUCKETS, registry=self.registry)
        self.latency = Histogram(PREFIX + "request_latency_seconds",
                                 "Time from a request's arrival to its last byte, by endpoint.",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.ttft = Histogram(PREFIX + "time_to_first_token_seconds",
                              "Time from a request's arrival to its first generated token.",
                              buckets=LATENCY_BUCKETS, registry=self.registry)
        self.tpot = Histogram(PREFIX + "time_per_output_token_seconds",
                              "Mean time between generated tokens of a request after the first.",
                              buckets=TOKEN_BUCKETS, registry=self.registry)
        self.router = APIRouter()
        self.router.add_api_route("/metrics", self._scrape, methods=["GET"],
                                  include_in_schema=False)

    def bind_engine(self, engine: StatsSource | None) -> None:
        """Read queue depth and running requests from `engine.stats()` on each scrape."""
        self._engine.engine = engine

    def observe_step(self, batch_size: int) -> None:
        """One decode step of `batch_size` sequences (the engine's `on_step`; any thread)."""
        self.batch_size.observe(batch_size)

    def request_done(self, endpoint: str, status: int, *, prompt_tokens: int = 0,
                     completion_tokens: int = 0, latency_s: float | None = None,
                     ttft_s: float | None = None, tpot_s: float | None = None) -> None:
        """Count one finished request (errors too: their status, zero tokens)."""
        self.requests.labels(endpoint=endpoint, status=str(status)).inc()
        self.prompt_tokens.inc(prompt_tokens)
        self.generation_tokens.inc(completion_tokens)
        if latency_s is not None:
            self.latency.labels(endpoint=endpoint).observe(latency_s)
        if ttft_s is not None:
            self.ttft.observe(ttft_s)
        if tpot_s is not None:
            self.tpot.observe(tpot_s)

    def _scrape(self, request: Request) -> Response:
        # A plain `def`: FastAPI runs it in its thread pool, so encoding every family's text
        # never holds up the event loop's streams.
        encode, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encode(self.registry), media_type=content_type)
