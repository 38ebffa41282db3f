"""The FastAPI application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from app.config import Settings, get_settings
from app.core.errors import install_error_handlers
from app.core.middleware import BodySizeLimitMiddleware, RequestIdMiddleware
from app.core.openapi import example, problem
from app.core.telemetry import install_telemetry
from app.db.engine import create_engine, make_session_factory
from app.routing.stream import OutboxHub

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
        from app.mail.adapters import sender_for

        passwords.configure(settings)
        engine = create_engine(
            db_url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow
        )
        app.state.engine = engine
        app.state.session_factory = make_session_factory(engine)
        app.state.signing_keys = load_signing_keys(settings)
        app.state.mail_sender = sender_for(settings)
        hub = OutboxHub(settings, db_url)
        app.state.outbox_hub = hub
        await hub.start()
        router_task = None
        if settings.run_router:
            router_task = _start_router(settings, router_database_url or db_url)
        try:
            yield
        finally:
            if router_task is not None:
                router_task[0].stop()
                await router_task[1]
            await hub.stop()
            await engine.dispose()

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
    _include_routers(app)
    install_telemetry(app, settings)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestIdMiddleware)
    _add_problem_schema(app)
    return app


def _start_router(settings: Settings, url: str) -> tuple[Any, Any]:
    """A routing worker inside this process (`switchboard run`)."""
    import asyncio

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


def _include_routers(app: FastAPI) -> None:
    from app.agents.endpoints import router as agents
    from app.api_keys.endpoints import router as api_keys
    from app.audit.endpoints import router as audit
    from app.auth.endpoints import router as auth
    from app.business_hours.endpoints import router as business_hours
    from app.channels.endpoints import router as channels
    from app.flows.endpoints import router as flows
    from app.health.endpoints import router as health
    from app.mail.endpoints import router as mail
    from app.phone_numbers.endpoints import router as phone_numbers
    from app.queues.endpoints import router as queues
    from app.quotas.endpoints import router as quotas
    from app.routing.endpoints import router as routing
    from app.routing.stream import router as agent_stream
    from app.routing_profiles.endpoints import router as routing_profiles
    from app.skills.endpoints import router as skills
    from app.sso.endpoints import router as sso
    from app.tenants.endpoints import router as tenants

    for r in (
        health,
        tenants,
        auth,
        api_keys,
        audit,
        mail,
        sso,
        quotas,
        skills,
        business_hours,
        queues,
        routing_profiles,
        agents,
        flows,
        phone_numbers,
        channels,
        routing,
        agent_stream,
    ):
        app.include_router(r)


def _add_problem_schema(app: FastAPI) -> None:
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = original()
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
