"""The FastAPI application."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from app.config import Settings, get_settings
from app.core.errors import install_error_handlers
from app.core.middleware import BodySizeLimitMiddleware, RequestIdMiddleware
from app.core.openapi import example, problem
from app.core.telemetry import install_telemetry
from app.db.engine import create_engine, make_session_factory
from app.routing.stream import OutboxHub
from app.storage.local import OBJECTS_PATH
from app.webchat.cors import WidgetCorsMiddleware

COMMON_ERRORS: dict[int | str, dict[str, Any]] = {
    400: problem(
        "Bad request", example(400, "bad-request", "The body is not UTF-8.", field="body")
    ),
    401: problem(
        "Not authenticated",
        example(401, "unauthorized", "Send 'Authorization: Bearer <token or API key>'."),
        example(401, "invalid-credentials", "The token or API key is invalid, expired or revoked."),
    ),
    403: problem(
        "Forbidden (scope, tenant suspended or quota)",
        example(
            403,
            "insufficient-scope",
            "This call needs the scope 'queues:write'.",
            required_scope="queues:write",
        ),
        example(403, "tenant-suspended", "This tenant is suspended."),
        example(
            403,
            "quota-exceeded",
            "Your plan allows 5 queues; 5 in use.",
            resource="queues",
            limit=5,
            current=5,
        ),
    ),
    404: problem("Not found (or another tenant's)", example(404, "not-found", "Not found")),
    409: problem("Conflict", example(409, "conflict", "The change conflicts with existing data.")),
    413: problem(
        "Body too large",
        example(413, "payload-too-large", "The request body exceeds 1048576 bytes."),
    ),
    415: problem(
        "The body is not JSON",
        example(415, "unsupported-media-type", "Send the body as application/json."),
    ),
    422: problem(
        "Validation failed: names the field and the reason",
        example(
            422,
            "validation-failed",
            "body.name: String should have at most 100 characters",
            field="body.name",
        ),
    ),
    429: problem(
        "Throttled",
        example(
            429,
            "login-throttled",
            "Too many failed logins for this account; try again in 840 s.",
            retry_after=840,
        ),
    ),
}


def create_app(
    settings: Settings | None = None,
    app_database_url: str | None = None,
    router_database_url: str | None = None,
) -> FastAPI:
    settings = settings or get_settings()
    db_url = app_database_url or settings.app_database_url
    if not db_url:
        raise RuntimeError("no runtime database URL (SWITCHBOARD_APP_DATABASE_URL)")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from app.auth import passwords
        from app.auth.jwt_keys import load_signing_keys
        from app.conversations.delivery import run_sweeper
        from app.mail.adapters import sender_for
        from app.storage.factory import store_for
        from app.storage.sweep import run_orphan_sweeper
        from app.webchat.hub import ConversationHub

        passwords.configure(settings)
        # Everything started here stops in reverse order on the way out.
        async with contextlib.AsyncExitStack() as stack:
            engine = create_engine(
                db_url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow
            )
            stack.push_async_callback(engine.dispose)
            app.state.engine = engine
            app.state.session_factory = make_session_factory(engine)
            # The abuse counters get a pool of their own: a request holding its connection
            # must never wait for another from the same pool to count itself (deadlock).
            limits_engine = create_engine(db_url, pool_size=2, max_overflow=8)
            stack.push_async_callback(limits_engine.dispose)
            app.state.limits_factory = make_session_factory(limits_engine)
            app.state.signing_keys = load_signing_keys(settings)
            app.state.mail_sender = sender_for(settings)
            app.state.object_store = store_for(settings)
            app.state.outbox_hub = await _started(stack, OutboxHub(settings, db_url))
            app.state.conversation_hub = await _started(stack, ConversationHub(settings, db_url))
            if settings.outbound_sweep_seconds > 0:
                sweeper = asyncio.create_task(
                    run_sweeper(
                        app.state.session_factory,
                        settings,
                        app.state.object_store,
                        settings.outbound_sweep_seconds,
                    )
                )
                stack.push_async_callback(_cancelled, sweeper)
            # Hourly (with jitter): attachment objects no row names, past the grace period.
            orphan_sweeper = asyncio.create_task(
                run_orphan_sweeper(app.state.session_factory, app.state.object_store, settings)
            )
            stack.push_async_callback(_cancelled, orphan_sweeper)
            if settings.run_smtp_port:
                smtp_server = await _start_smtp(app, settings)
                if smtp_server is not None:
                    stack.push_async_callback(smtp_server.close)
            if settings.run_router:
                router, task = _start_router(settings, router_database_url or db_url)
                stack.push_async_callback(_awaited, task)
                stack.callback(router.stop)  # last in, first out: stop, then wait
            yield

    app = FastAPI(
        title="Switchboard",
        version="0.1.0",
        description="Multi-tenant contact-center-as-a-service API.",
        lifespan=lifespan,
        responses=COMMON_ERRORS,
        telemetry={"tracing": False, "metrics": False},  # ours: app/core/telemetry.py
    )
    app.state.settings = settings
    install_error_handlers(app)
    path_order = _include_routers(app)
    install_telemetry(app, settings)
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        # Presigned uploads carry their own (larger) limit and check it as they read.
        exempt_prefixes=(OBJECTS_PATH + "/",),
    )
    app.add_middleware(WidgetCorsMiddleware)  # /v1/widget/ only (app/webchat/cors.py)
    app.add_middleware(RequestIdMiddleware)
    _add_problem_schema(app, path_order)
    return app


async def _started(stack: contextlib.AsyncExitStack, hub: Any) -> Any:
    await hub.start()
    stack.push_async_callback(hub.stop)
    return hub


async def _cancelled(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _awaited(task: asyncio.Task[Any]) -> None:
    await task


def _start_router(settings: Settings, url: str) -> tuple[Any, Any]:
    """A routing worker inside this process (`switchboard run`)."""
    from app.db.bootstrap import router_url_like
    from app.routing.worker import Router, RouterConfig

    router = Router(
        RouterConfig(
            url=router_url_like(settings, url),
            lease_seconds=settings.routing_lease_seconds,
            offer_timeout_seconds=settings.routing_offer_timeout_seconds,
            batch_tenants=settings.routing_batch_tenants,
            max_offers_per_tenant=settings.routing_max_offers_per_tenant,
        )
    )
    return router, asyncio.create_task(router.run())


async def _start_smtp(app: FastAPI, settings: Settings) -> Any:
    """Inbound mail in this process (`switchboard run`); a taken port is a warning, not
    a failure to start the API."""
    import logging
    from functools import partial

    from app.emailing.ingest import accepts, allow_peer, ingest
    from app.emailing.smtp_server import InboundHandler, start_smtp_server

    factory = app.state.session_factory
    handler = InboundHandler(
        accepts=partial(accepts, factory, settings),
        deliver=partial(ingest, factory, settings, app.state.object_store),
        domain=settings.inbound_email_domain,
        max_recipients=settings.smtp_max_recipients,
        allow_peer=partial(allow_peer, factory, settings),
    )
    try:
        return await start_smtp_server(
            "127.0.0.1",
            settings.run_smtp_port,
            handler,
            data_size_limit=settings.smtp_max_message_bytes,
            hostname=settings.inbound_email_domain,
        )
    except OSError as exc:
        logging.getLogger("switchboard.smtp").warning(
            "inbound SMTP not started on port %s: %s", settings.run_smtp_port, exc
        )
        return None


# Matched first, in this order: Starlette tries the routes one after the other until one
# matches, and most requests are these (health checks, provider webhooks, the web chat
# widget, the agents' stream). Moving them ahead changes no answer: no route of another
# router matches a path of theirs (tests/test_route_resolution.py). The OpenAPI document
# keeps the reading order of `_include_routers`.
MATCHED_FIRST = ("health", "messaging_webhooks", "webchat", "agent_stream")


def _include_routers(app: FastAPI) -> dict[str, int]:
    """Every router, matched-first ones ahead; returns each path's place in the reading
    order."""
    from app.agents.endpoints import router as agents
    from app.api_keys.endpoints import router as api_keys
    from app.audit.endpoints import router as audit
    from app.auth.endpoints import router as auth
    from app.business_hours.endpoints import router as business_hours
    from app.channels.endpoints import router as channels
    from app.conversations.endpoints import router as conversations
    from app.customers.endpoints import router as customers
    from app.flows.endpoints import router as flows
    from app.health.endpoints import router as health
    from app.mail.endpoints import router as mail
    from app.messaging.webhooks import router as messaging_webhooks
    from app.phone_numbers.endpoints import router as phone_numbers
    from app.proactive.endpoints import router as proactive
    from app.queues.endpoints import router as queues
    from app.quotas.endpoints import router as quotas
    from app.routing.endpoints import router as routing
    from app.routing.stream import router as agent_stream
    from app.routing_profiles.endpoints import router as routing_profiles
    from app.skills.endpoints import router as skills
    from app.sso.endpoints import router as sso
    from app.storage.endpoints import router as storage
    from app.tenants.endpoints import router as tenants
    from app.webchat.endpoints import router as webchat

    # Reading order: the OpenAPI document and /docs list the operations in it.
    reading_order = {
        "health": health,
        "tenants": tenants,
        "auth": auth,
        "api_keys": api_keys,
        "audit": audit,
        "mail": mail,
        "sso": sso,
        "quotas": quotas,
        "skills": skills,
        "business_hours": business_hours,
        "queues": queues,
        "routing_profiles": routing_profiles,
        "agents": agents,
        "flows": flows,
        "phone_numbers": phone_numbers,
        "channels": channels,
        "customers": customers,
        "conversations": conversations,
        "routing": routing,
        "agent_stream": agent_stream,
        "storage": storage,
        "webchat": webchat,
        "proactive": proactive,
        "messaging_webhooks": messaging_webhooks,
    }
    rest = [r for name, r in reading_order.items() if name not in MATCHED_FIRST]
    for r in [reading_order[name] for name in MATCHED_FIRST] + rest:
        app.include_router(r)
    paths = (c.path_format for r in reading_order.values() for c in iter_route_contexts(r.routes))
    return {path: i for i, path in enumerate(dict.fromkeys(p for p in paths if p))}


def _add_problem_schema(app: FastAPI, path_order: dict[str, int]) -> None:
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = original()
        _in_reading_order(schema, path_order)
        schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = {
            "type": "object",
            "required": ["type", "title", "status", "code", "detail"],
            "properties": {
                "type": {"type": "string"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "code": {"type": "string", "description": "stable kebab-case error code"},
                "detail": {"type": "string"},
                "instance": {"type": "string"},
                "request_id": {"type": "string"},
                "field": {"type": "string", "description": "the offending field"},
                "errors": {"type": "array", "items": {"type": "object"}},
            },
        }
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _in_reading_order(schema: dict[str, Any], path_order: dict[str, int]) -> None:
    """The document as if the routes were matched in reading order: the paths, and the
    security schemes in the order an operation first uses them."""
    paths = schema.get("paths")
    if not paths:
        return
    ranked = sorted(paths, key=lambda p: path_order.get(p, len(path_order)))
    schema["paths"] = {p: paths[p] for p in ranked}
    schemes = schema.get("components", {}).get("securitySchemes")
    if schemes:
        used = (
            name
            for p in ranked
            for operation in paths[p].values()
            for requirement in operation.get("security", [])
            for name in requirement
        )
        order = [*dict.fromkeys(n for n in used if n in schemes)]
        schema["components"]["securitySchemes"] = {
            n: schemes[n] for n in [*order, *(n for n in schemes if n not in order)]
        }
