"""Traces carry the route template and the tenant; /metrics counts by both."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI, Request
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client.parser import text_string_to_metric_families

from app.auth.principal import MePrincipal
from app.config import Settings
from app.db.bootstrap import DatabaseUrls
from tests.conftest import create_tenant


@dataclass
class Traced:
    app: FastAPI
    spans: InMemorySpanExporter

    def server_spans(self) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if s.kind == SpanKind.SERVER]

    def only_server_span(self) -> ReadableSpan:
        spans = self.server_spans()
        assert len(spans) == 1, [s.name for s in spans]
        return spans[0]


@pytest.fixture(scope="module")
def global_spans() -> Iterator[InMemorySpanExporter]:
    """The process-wide tracer provider, always sampling, observed.

    Spans that anything else would make through the global provider (FastAPI's native
    instrumentation, were it on) land here. Set before the apps of this module exist.
    """
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    if not isinstance(provider, TracerProvider) or "AlwaysOn" not in (
        provider.sampler.get_description()
    ):
        pytest.skip("another test set a global tracer provider that does not sample all")
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter


async def _started(settings: Settings, db_urls: DatabaseUrls, ratio: float) -> Traced:
    from app.main import create_app

    otel = settings.model_copy(
        update={"otel_enabled": True, "otel_exporter": "none", "otel_sample_ratio": ratio}
    )
    app = create_app(otel, app_database_url=db_urls.app)
    exporter = InMemorySpanExporter()
    app.state.tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))

    # Probes: what a service does when it opens its own span inside a request.
    @app.get("/v1/_probe/child")
    async def child(principal: MePrincipal, request: Request) -> dict[str, str]:
        tracer = request.app.state.tracer_provider.get_tracer("probe")
        with tracer.start_as_current_span("probe.child"):
            return {"tenant": str(principal.tenant_id)}

    @app.get("/_probe/anonymous-child")
    async def anonymous_child(request: Request) -> dict[str, str]:
        with request.app.state.tracer_provider.get_tracer("probe").start_as_current_span("c"):
            return {}

    @app.get("/_probe/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    return Traced(app, exporter)


@pytest.fixture(scope="module")
async def traced_app(
    settings: Settings, db_urls: DatabaseUrls, global_spans: InMemorySpanExporter
) -> AsyncIterator[Traced]:
    traced = await _started(settings, db_urls, ratio=1.0)
    async with traced.app.router.lifespan_context(traced.app):
        yield traced


@pytest.fixture(scope="module")
async def unsampled_app(
    settings: Settings, db_urls: DatabaseUrls, global_spans: InMemorySpanExporter
) -> AsyncIterator[Traced]:
    traced = await _started(settings, db_urls, ratio=0.0)
    async with traced.app.router.lifespan_context(traced.app):
        yield traced


def _client(app: FastAPI, **kw: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000), **kw)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
async def traced(
    traced_app: Traced, global_spans: InMemorySpanExporter, clean_db: asyncpg.Connection
) -> AsyncIterator[tuple[Traced, httpx.AsyncClient]]:
    traced_app.spans.clear()
    global_spans.clear()
    async with _client(traced_app.app) as c:
        yield traced_app, c


async def test_authenticated_span_carries_tenant_and_route_template(
    traced: tuple[Traced, httpx.AsyncClient],
) -> None:
    t, client = traced
    tenant = await create_tenant(client)
    keys = (await client.get("/v1/api-keys", headers=tenant["headers"])).json()["items"]
    key_id = keys[0]["id"]
    t.spans.clear()

    r = await client.get(f"/v1/api-keys/{key_id}", headers=tenant["headers"])
    assert r.status_code == 200

    span = t.only_server_span()
    assert span.name == "GET /v1/api-keys/{key_id}"
    attrs = dict(span.attributes or {})
    assert attrs["http.request.method"] == "GET"
    assert attrs["http.route"] == "/v1/api-keys/{key_id}"
    assert attrs["url.path"] == f"/v1/api-keys/{key_id}"
    assert attrs["http.response.status_code"] == 200
    assert attrs["tenant.id"] == tenant["tenant"]["id"]
    assert span.status.status_code != StatusCode.ERROR


async def test_jwt_caller_and_scope_failure_still_name_the_tenant(
    traced: tuple[Traced, httpx.AsyncClient],
) -> None:
    t, client = traced
    tenant = await create_tenant(client)
    token = await client.post(
        "/v1/auth/token", json={"email": tenant["email"], "password": tenant["password"]}
    )
    bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
    limited = await client.post(
        "/v1/api-keys", headers=tenant["headers"], json={"name": "me only", "scopes": ["me"]}
    )
    me_only = {"Authorization": f"Bearer {limited.json()['key']}"}
    t.spans.clear()

    assert (await client.get("/v1/me", headers=bearer)).status_code == 200
    # Authenticated, not authorized: the tenant is known, the answer is 403.
    assert (await client.get("/v1/api-keys", headers=me_only)).status_code == 403

    me, forbidden = t.server_spans()
    assert me.name == "GET /v1/me"
    assert dict(me.attributes or {})["tenant.id"] == tenant["tenant"]["id"]
    assert dict(forbidden.attributes or {})["http.response.status_code"] == 403
    assert dict(forbidden.attributes or {})["tenant.id"] == tenant["tenant"]["id"]


async def test_anonymous_and_failed_authentication_have_no_tenant(
    traced: tuple[Traced, httpx.AsyncClient],
) -> None:
    t, client = traced
    tenant = await create_tenant(client)
    # An authenticated call first: in one task (this client), its tenant must not leak.
    assert (await client.get("/v1/me", headers=tenant["headers"])).status_code == 200
    t.spans.clear()

    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/v1/me")).status_code == 401
    bad = {"Authorization": "Bearer sbk_not_a_real_key"}
    assert (await client.get("/v1/me", headers=bad)).status_code == 401
    assert (await client.get("/_probe/anonymous-child")).status_code == 200

    spans = t.spans.get_finished_spans()
    assert [s.name for s in spans if s.kind == SpanKind.SERVER] == [
        "GET /healthz",
        "GET /v1/me",
        "GET /v1/me",
        "GET /_probe/anonymous-child",
    ]
    assert len(spans) == 5  # the probe's child span too
    for span in spans:
        assert "tenant.id" not in (span.attributes or {}), span.name
    statuses = [dict(s.attributes or {}).get("http.response.status_code") for s in spans]
    assert statuses.count(401) == 2


async def test_child_spans_started_after_authentication_carry_the_tenant(
    traced: tuple[Traced, httpx.AsyncClient],
) -> None:
    t, client = traced
    tenant = await create_tenant(client)
    t.spans.clear()

    r = await client.get("/v1/_probe/child", headers=tenant["headers"])
    assert r.status_code == 200

    child, server = t.spans.get_finished_spans()
    assert child.name == "probe.child"
    assert child.parent is not None and child.parent.span_id == server.context.span_id
    assert dict(child.attributes or {})["tenant.id"] == tenant["tenant"]["id"]
    assert dict(server.attributes or {})["tenant.id"] == tenant["tenant"]["id"]


async def test_unknown_paths_are_not_named_by_their_raw_path(
    traced: tuple[Traced, httpx.AsyncClient],
) -> None:
    t, client = traced
    r = await client.get(f"/v1/nothing-here/{uuid.uuid4()}")
    assert r.status_code == 404

    span = t.only_server_span()
    assert span.name == "GET"
    assert "http.route" not in (span.attributes or {})
    assert dict(span.attributes or {})["http.response.status_code"] == 404


async def test_errors_are_recorded_with_the_status_the_client_saw(
    traced_app: Traced, clean_db: asyncpg.Connection
) -> None:
    traced_app.spans.clear()
    async with _client(traced_app.app, raise_app_exceptions=False) as client:
        assert (await client.get("/_probe/boom")).status_code == 500
        too_big = b"x" * (traced_app.app.state.settings.max_body_bytes + 1)
        r = await client.post(
            "/v1/signup", content=too_big, headers={"content-type": "application/json"}
        )
        assert r.status_code == 413

    boom, signup = traced_app.server_spans()
    assert boom.name == "GET /_probe/boom"
    assert boom.status.status_code == StatusCode.ERROR
    assert dict(boom.attributes or {})["http.response.status_code"] == 500
    assert dict(boom.attributes or {})["error.type"] == "RuntimeError"
    assert [e.name for e in boom.events] == ["exception"]
    # Refused by the body-size middleware, which runs inside ours.
    assert dict(signup.attributes or {})["http.response.status_code"] == 413


async def test_sampling_ratio_zero_records_nothing_but_follows_a_sampled_caller(
    unsampled_app: Traced, clean_db: asyncpg.Connection
) -> None:
    unsampled_app.spans.clear()
    async with _client(unsampled_app.app) as client:
        tenant = await create_tenant(client)
        for _ in range(20):
            assert (await client.get("/v1/me", headers=tenant["headers"])).status_code == 200
            assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/v1/_probe/child", headers=tenant["headers"])).status_code == 200
        assert unsampled_app.spans.get_finished_spans() == ()

        # ParentBased: an upstream service that sampled this trace gets its span.
        trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
        sampled = {"traceparent": f"00-{trace_id}-{parent_id}-01"}
        not_sampled = {"traceparent": f"00-{trace_id}-{parent_id}-00"}
        assert (await client.get("/healthz", headers=not_sampled)).status_code == 200
        assert (await client.get("/healthz", headers=sampled)).status_code == 200

    (span,) = unsampled_app.spans.get_finished_spans()
    assert span.name == "GET /healthz"
    assert format(span.context.trace_id, "032x") == trace_id
    assert span.parent is not None and format(span.parent.span_id, "016x") == parent_id


async def test_one_server_span_per_request_and_none_with_tracing_off(
    traced: tuple[Traced, httpx.AsyncClient],
    client: httpx.AsyncClient,
    global_spans: InMemorySpanExporter,
) -> None:
    """FastAPI's native instrumentation would trace through the global provider, which
    is configured here: it must stay off, with our tracing on and with it off."""
    t, traced_client = traced
    assert (await traced_client.get("/healthz")).status_code == 200
    assert (await client.get("/healthz")).status_code == 200  # the default app: tracing off

    assert [s.name for s in t.spans.get_finished_spans()] == ["GET /healthz"]
    assert global_spans.get_finished_spans() == ()


def _samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def _value(samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    found = [v for n, lab, v in samples if n == name and lab == labels]
    assert len(found) <= 1
    return found[0] if found else 0.0


async def test_metrics_count_by_route_template_status_and_tenant(
    client: httpx.AsyncClient,
) -> None:
    """On by default: the shared app has tracing off and still counts."""
    tenant = await create_tenant(client)
    tid = tenant["tenant"]["id"]
    missing = uuid.uuid4()
    assert (await client.get("/v1/me", headers=tenant["headers"])).status_code == 200
    assert (await client.get("/v1/me", headers=tenant["headers"])).status_code == 200
    r = await client.get(f"/v1/api-keys/{missing}", headers=tenant["headers"])
    assert r.status_code == 404
    assert (await client.get(f"/v1/nothing-here/{missing}")).status_code == 404
    assert (await client.get("/v1/me")).status_code == 401

    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    samples = _samples(r.text)

    total = "switchboard_http_requests_total"
    me = {"method": "GET", "route": "/v1/me", "status": "200", "tenant_id": tid}
    assert _value(samples, total, **me) == 2
    assert _value(samples, "switchboard_http_request_duration_seconds_count", **me) == 2
    by_id = {"method": "GET", "route": "/v1/api-keys/{key_id}", "status": "404", "tenant_id": tid}
    assert _value(samples, total, **by_id) == 1
    assert _value(samples, total, method="GET", route="/v1/me", status="401", tenant_id="") >= 1
    assert _value(samples, total, method="GET", route="unmatched", status="404", tenant_id="") >= 1
    assert _value(samples, total, method="POST", route="/v1/signup", status="201", tenant_id="")
    # No series is named after a raw path.
    assert not [lab for _, lab, _ in samples if str(missing) in lab.get("route", "")]


async def test_metrics_endpoint_is_not_in_the_api_schema(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert "/metrics" not in paths
    assert "/v1/me" in paths
