"""Prometheus metrics of a routing worker (`switchboard router --metrics-port`).

Offers and time-outs carry ``tenant_id`` (as the API's metrics do); rounds, their
duration and the shards held are per worker.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from app.routing.rounds import RoundResult

ROUND_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5, 20, 60, 300, 1800)


class RouterMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.rounds = Counter(
            "switchboard_routing_rounds", "Matching rounds run.", registry=self.registry
        )
        self.round_seconds = Histogram(
            "switchboard_routing_round_duration_seconds",
            "Time of one matching round (one transaction).",
            buckets=ROUND_BUCKETS,
            registry=self.registry,
        )
        self.offers = Counter(
            "switchboard_routing_offers",
            "Offers made to agents, by tenant.",
            ("tenant_id",),
            registry=self.registry,
        )
        self.timeouts = Counter(
            "switchboard_routing_offer_timeouts",
            "Offers that rang out unanswered.",
            registry=self.registry,
        )
        self.wait = Histogram(
            "switchboard_routing_enqueue_to_offer_seconds",
            "From enqueue to the offer that reached an agent.",
            buckets=WAIT_BUCKETS,
            registry=self.registry,
        )
        self.shards = Gauge(
            "switchboard_routing_shards_held", "Shards this worker leases.", registry=self.registry
        )

    def observe(self, result: RoundResult, seconds: float, shards: int) -> None:
        self.rounds.inc()
        self.round_seconds.observe(seconds)
        self.timeouts.inc(result.timed_out)
        for tenant_id, n in result.offers_by_tenant.items():
            self.offers.labels(tenant_id=str(tenant_id)).inc(n)
        for ms in result.offer_latencies_ms:
            self.wait.observe(ms / 1000.0)
        self.shards.set(shards)

    def serve(self, port: int, host: str = "0.0.0.0") -> None:  # noqa: S104 - a scrape port
        start_http_server(port, addr=host, registry=self.registry)
