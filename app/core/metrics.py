"""Prometheus metrics of the HTTP API and the `GET /metrics` scrape endpoint.

Labels are bounded on purpose: the route is the template (``/v1/api-keys/{key_id}``,
never the raw path), unknown paths share one value, and methods outside the HTTP
registry collapse to ``_OTHER`` (OpenTelemetry's convention), so a scanner cannot
create a series per URL it tries. Each application instance has its own registry, so
several apps in one process (tests) never collide.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

UNMATCHED_ROUTE = "unmatched"
OTHER_METHOD = "_OTHER"
KNOWN_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY", "TRACE"}
)
LABELS = ("method", "route", "status", "tenant_id")
# Seconds; API calls are expected in milliseconds, anything past 10 s is an outage.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)


def normalize_method(method: str) -> str:
    return method if method in KNOWN_METHODS else OTHER_METHOD


class HttpMetrics:
    """Request count and latency, labelled by method, route template, status, tenant."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # No `_created` series: one more series per label set for a timestamp that
        # Prometheus does not need (process-wide switch; this process has no other use).
        disable_created_metrics()
        self.registry = registry or CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.registry.register(MESSAGES)
        self.registry.register(STORAGE_SWEEP)
        self.requests = Counter(
            "switchboard_http_requests",
            "HTTP requests answered, by route template, status and tenant.",
            LABELS,
            registry=self.registry,
        )
        self.duration = Histogram(
            "switchboard_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template, status and tenant.",
            LABELS,
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        # labels() validates and locks on every call; resolve each series once.
        self._series: dict[tuple[str, str, int, str], tuple[Counter, Histogram]] = {}

    def observe(self, method: str, route: str, status: int, tenant_id: str, seconds: float) -> None:
        key = (method, route, status, tenant_id)
        series = self._series.get(key)
        if series is None:
            values = (method, route, str(status), tenant_id)
            series = (self.requests.labels(*values), self.duration.labels(*values))
            self._series[key] = series
        series[0].inc()
        series[1].observe(seconds)


class ProcessCounter(Collector):
    """A counter family counted where the work happens (requests, SMTP sessions,
    background jobs) into one process-wide table that every application's registry
    reads, so no code path needs the app to count. ``n`` below 1 counts nothing."""

    def __init__(self, name: str, documentation: str, labels: tuple[str, ...]) -> None:
        self.name, self.documentation, self.labels = name, documentation, labels
        self._counts: dict[tuple[str, ...], int] = {}
        self._lock = threading.Lock()

    def inc(self, *labels: object, n: int = 1) -> None:
        if n <= 0:
            return
        key = tuple(str(v) for v in labels)
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + n

    def value(self, *labels: object) -> int:
        with self._lock:
            return self._counts.get(tuple(str(v) for v in labels), 0)

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        with self._lock:
            items = list(self._counts.items())
        for labels, value in items:
            family.add_metric(list(labels), value)
        yield family


# Inbound ``received``; outbound ``sent``, ``retry``, ``failed``.
MESSAGES = ProcessCounter(
    "switchboard_messages",
    "Conversation messages, by tenant, channel type, direction and outcome.",
    ("tenant_id", "channel", "direction", "outcome"),
)
# Outcomes: deleted, kept_referenced, kept_young, kept_unrecognised, grants_expired, failed.
STORAGE_SWEEP = ProcessCounter(
    "switchboard_storage_sweep_objects",
    "Attachment objects seen by the orphan sweep, by tenant and outcome.",
    ("tenant_id", "outcome"),
)


router = APIRouter(include_in_schema=False)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus text exposition (OpenMetrics when the scraper asks for it)."""
    http_metrics: HttpMetrics = request.app.state.http_metrics
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encoder(http_metrics.registry), headers={"content-type": content_type})
