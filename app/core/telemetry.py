"""OpenTelemetry traces and Prometheus metrics for the HTTP API.

One pure-ASGI middleware wraps the whole application, outside Starlette's error and
body-limit middleware, so it sees the status the client sees (500s, 413s included).
Per request it records the Prometheus series (always on: a dictionary lookup and two
increments) and, when ``otel_enabled``, one SERVER span named ``METHOD /route/template``.
With tracing off nothing of OpenTelemetry runs on the request path.

``tenant.id``: the server span takes it from ``request.state.principal`` when the
request ends; spans started inside the request after authentication get it from
:func:`tag_tenant` (called by ``authenticate``) through :class:`TenantSpanProcessor`.
FastAPI's own native instrumentation is switched off in ``create_app`` so that a request
never produces two server spans. See docs/decisions/0003-telemetry.md.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from time import perf_counter
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import Settings
from app.core.metrics import OTHER_METHOD, UNMATCHED_ROUTE, HttpMetrics, normalize_method
from app.core.metrics import router as metrics_router

log = logging.getLogger("switchboard.telemetry")

TENANT_ATTRIBUTE = "tenant.id"

# The tenant of the request being handled, as a string; None outside authenticated work.
_current_tenant: ContextVar[str | None] = ContextVar("switchboard_tenant_id", default=None)


def tag_tenant(tenant_id: uuid.UUID | str) -> None:
    """Spans started from now on in this request carry ``tenant.id``.

    Called once the principal is resolved. Costs one ContextVar.set when tracing is off.
    """
    _current_tenant.set(str(tenant_id))


def current_tenant() -> str | None:
    return _current_tenant.get()


class TenantSpanProcessor(SpanProcessor):
    """Copy the request's tenant onto every span started while it is set."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        tenant = _current_tenant.get()
        if tenant is not None:
            span.set_attribute(TENANT_ATTRIBUTE, tenant)

    def on_end(self, span: ReadableSpan) -> None:
        return None

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def build_tracer_provider(settings: Settings, *, service_version: str) -> TracerProvider:
    """ParentBased(TraceIdRatioBased(ratio)), the tenant processor, then the exporter."""
    resource = Resource.create(
        {
            "service.name": settings.otel_service_name,
            "service.version": service_version,
            "deployment.environment.name": settings.environment,
        }
    )
    provider = TracerProvider(
        sampler=ParentBased(TraceIdRatioBased(settings.otel_sample_ratio)),
        resource=resource,
        shutdown_on_exit=False,  # flushed by the application's lifespan instead
    )
    # First, so that exporters see the attribute on spans they receive.
    provider.add_span_processor(TenantSpanProcessor())
    if settings.otel_exporter == "otlp":
        # Endpoint, headers, timeout: the standard OTEL_EXPORTER_OTLP_* variables.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    elif settings.otel_exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    return provider


def route_template(scope: Scope, templates: dict[Any, str]) -> str | None:
    """The matched route's template, or None when no route matched (404)."""
    route = scope.get("route")
    if route is not None:
        return getattr(route, "path_format", None) or getattr(route, "path", None)
    # FastAPI records the route only for API routes; /docs and /openapi.json are plain
    # Starlette routes, recognised by their endpoint.
    endpoint = scope.get("endpoint")
    return templates.get(endpoint) if endpoint is not None else None


def _tenant_of(scope: Scope) -> str | None:
    state = scope.get("state")
    principal = state.get("principal") if state else None
    return str(principal.tenant_id) if principal is not None else None


def _remote_parent(scope: Scope) -> Context | None:
    """The caller's trace context, when it sent one (W3C traceparent)."""
    headers = scope.get("headers") or ()
    for name, _ in headers:
        if name == b"traceparent":
            carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers}
            return propagate.extract(carrier)
    return None


def _error_type(exc: BaseException) -> str:
    cls = type(exc)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


class TelemetryMiddleware:
    """Metrics for every HTTP request; a SERVER span as well when ``tracer`` is set."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: HttpMetrics,
        tracer: Tracer | None,
        templates: dict[Any, str],
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.tracer = tracer
        self.templates = templates

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
        elif self.tracer is None:
            await self._metered(scope, receive, send)
        else:
            await self._traced(self.tracer, scope, receive, send)

    async def _metered(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = perf_counter()
        status = 500  # unless a response starts

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = route_template(scope, self.templates)
            self.metrics.observe(
                normalize_method(scope["method"]),
                route or UNMATCHED_ROUTE,
                status,
                _tenant_of(scope) or "",
                perf_counter() - started,
            )

    async def _traced(self, tracer: Tracer, scope: Scope, receive: Receive, send: Send) -> None:
        started = perf_counter()
        status = 500
        raw_method = scope["method"]
        method = normalize_method(raw_method)
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "url.path": scope["path"],
            "url.scheme": scope.get("scheme", "http"),
        }
        if method != raw_method:
            attributes["http.request.method_original"] = raw_method
        parent = _remote_parent(scope)
        span_name = "HTTP" if method == OTHER_METHOD else method
        span = tracer.start_span(
            span_name,
            context=parent,
            kind=SpanKind.SERVER,
            attributes=attributes,
        )
        context_token = otel_context.attach(trace.set_span_in_context(span, parent))
        # Requests served in one task (tests, in-process calls) must not inherit a tenant.
        tenant_token = _current_tenant.set(None)

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        error: BaseException | None = None
        try:
            await self.app(scope, receive, send_status)
        except BaseException as exc:
            error = exc
            raise
        finally:
            _current_tenant.reset(tenant_token)
            otel_context.detach(context_token)
            route = route_template(scope, self.templates)
            tenant = _tenant_of(scope)
            if span.is_recording():
                if route is not None:
                    span.update_name(f"{span_name} {route}")
                    span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                if tenant is not None:
                    span.set_attribute(TENANT_ATTRIBUTE, tenant)
                if error is not None:
                    span.record_exception(error)
                    span.set_attribute("error.type", _error_type(error))
                    span.set_status(Status(StatusCode.ERROR, _error_type(error)))
                elif status >= 500:
                    span.set_attribute("error.type", str(status))
                    span.set_status(Status(StatusCode.ERROR))
            span.end()
            self.metrics.observe(
                method, route or UNMATCHED_ROUTE, status, tenant or "", perf_counter() - started
            )


def _plain_route_templates(app: FastAPI) -> dict[Any, str]:
    return {
        r.endpoint: r.path_format
        for r in app.routes
        if isinstance(r, Route) and not isinstance(r, APIRoute)
    }


def _register_global(provider: TracerProvider) -> None:
    # trace.get_tracer(__name__) anywhere in the process (services, future
    # instrumentations) should land in this provider; OpenTelemetry allows one.
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        trace.set_tracer_provider(provider)
    elif trace.get_tracer_provider() is not provider:
        log.info("a global tracer provider is already set; HTTP spans use this app's own")


def _flush_on_shutdown(app: FastAPI, provider: TracerProvider) -> None:
    inner: Callable[[Any], contextlib.AbstractAsyncContextManager[Any]]
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(application: Any) -> AsyncIterator[Any]:
        try:
            async with inner(application) as state:
                yield state
        finally:
            import anyio.to_thread

            # The exporter may wait on the network for its final batch; not on the loop.
            await anyio.to_thread.run_sync(provider.shutdown)

    app.router.lifespan_context = lifespan


def install_telemetry(app: FastAPI, settings: Settings) -> None:
    """Install the telemetry middleware and the ``GET /metrics`` route.

    Metrics are always on; tracing only with ``settings.otel_enabled``. The middleware
    wraps the built middleware stack (outermost), whatever is added after this call.
    """
    metrics = HttpMetrics()
    app.state.http_metrics = metrics
    app.include_router(metrics_router)
    tracer: Tracer | None = None
    if settings.otel_enabled:
        provider = build_tracer_provider(settings, service_version=app.version)
        app.state.tracer_provider = provider
        _register_global(provider)
        _flush_on_shutdown(app, provider)
        tracer = provider.get_tracer("switchboard.http")

    build_stack = app.build_middleware_stack

    def build_middleware_stack() -> ASGIApp:
        return TelemetryMiddleware(
            build_stack(), metrics=metrics, tracer=tracer, templates=_plain_route_templates(app)
        )

    app.build_middleware_stack = build_middleware_stack  # type: ignore[method-assign]
