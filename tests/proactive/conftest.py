"""Proactive engagement test helpers: customers made through the customer service in a
bound session, page views inserted as the widget API stores them, and the engine run
in a bound session with a fixed clock."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from app.customers.service import ResolvedIdentity, resolve_identity
from app.db.tenant import TenantScope, bind_tenant, mint_scope
from app.proactive.service import Invitation, evaluate_visit
from app.routing.connection import raw
from app.webchat.models import PageView
from tests.conftest import create_tenant

Tenant = dict[str, Any]


def scope_of(tenant: Tenant) -> TenantScope:
    return mint_scope(uuid.UUID(tenant["tenant"]["id"]))


def daytime_zone(at: datetime) -> str:
    """A fixed-offset IANA zone where ``at`` is around noon (outside any quiet hours),
    for tests that go through the API, which decides at the real current time."""
    offset = 12 - at.astimezone(UTC).hour
    # Etc/GMT-3 is UTC+3 (POSIX signs).
    return "Etc/UTC" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


@dataclass
class Visitor:
    tenant: Tenant
    scope: TenantScope
    channel_id: uuid.UUID
    identity: ResolvedIdentity

    @property
    def customer_id(self) -> uuid.UUID:
        return self.identity.customer_id


class World:
    """One tenant with a webchat channel, and the app to run services in."""

    def __init__(self, app: Any, client: httpx.AsyncClient, tenant: Tenant, channel_id: str):
        self.app, self.client, self.tenant = app, client, tenant
        self.scope = scope_of(tenant)
        self.channel_id = uuid.UUID(channel_id)
        self.headers: dict[str, str] = tenant["headers"]

    async def rule(self, **fields: Any) -> dict[str, Any]:
        body = {
            "name": f"rule-{uuid.uuid4().hex[:8]}",
            "action": "invite_chat",
            "message": "Can we help?",
        } | fields
        r = await self.client.post("/v1/proactive-rules", json=body, headers=self.headers)
        assert r.status_code == 201, r.text
        out: dict[str, Any] = r.json()
        return out

    async def visitor(
        self,
        *,
        timezone: str | None = None,
        attributes: dict[str, Any] | None = None,
        phone: str | None = None,
        consents: dict[str, str] | None = None,
    ) -> Visitor:
        """A web chat visitor: a customer made by resolve_identity, with an optional
        profile timezone, attributes, phone identity and consents."""
        async with self.app.state.session_factory() as session, session.begin():
            await bind_tenant(session, self.scope)
            identity = await resolve_identity(
                session, self.scope, "webchat", f"visitor-{uuid.uuid4().hex}"
            )
            conn = await raw(session)
            await conn.execute(
                "UPDATE customers SET timezone = $3, attributes = $4::jsonb "
                "WHERE tenant_id = $1 AND id = $2",
                self.scope.tenant_id,
                identity.customer_id,
                timezone,
                json.dumps(attributes or {}),
            )
            if phone:
                await conn.execute(
                    "INSERT INTO customer_identities (tenant_id, id, customer_id, kind, value, "
                    "verified, created_at) VALUES ($1, $2, $3, 'phone', $4, true, now())",
                    self.scope.tenant_id,
                    uuid.uuid4(),
                    identity.customer_id,
                    phone,
                )
            for channel, status in (consents or {}).items():
                await conn.execute(
                    "INSERT INTO customer_consents (tenant_id, customer_id, channel, status, "
                    "source, updated_at) VALUES ($1, $2, $3, $4, 'test', now())",
                    self.scope.tenant_id,
                    identity.customer_id,
                    channel,
                    status,
                )
        return Visitor(self.tenant, self.scope, self.channel_id, identity)

    async def view(
        self,
        visitor: Visitor,
        at: datetime,
        url: str = "https://www.acme.example/",
        attributes: dict[str, Any] | None = None,
        now: datetime | None = None,
    ) -> Invitation | None:
        """The visitor sees a page at ``at``; the engine evaluates it at ``now`` (default
        ``at``)."""
        async with self.app.state.session_factory() as session, session.begin():
            await bind_tenant(session, self.scope)
            view = PageView(
                tenant_id=self.scope.tenant_id,
                customer_id=visitor.customer_id,
                identity_id=visitor.identity.identity_id,
                channel_id=visitor.channel_id,
                url=url,
                at=at,
                attributes=attributes or {},
            )
            session.add(view)
            await session.flush()
            return await evaluate_visit(
                session,
                self.scope,
                customer_id=visitor.customer_id,
                identity_id=visitor.identity.identity_id,
                channel_id=visitor.channel_id,
                page_view_id=view.id,
                now=now or at,
                settings=self.app.state.settings,
            )

    async def rows(self, sql: str, *args: Any) -> list[Any]:
        """Read the tenant's rows as the application role (RLS applies)."""
        async with self.app.state.session_factory() as session, session.begin():
            await bind_tenant(session, self.scope)
            conn = await raw(session)
            return list(await conn.fetch(sql, *args))

    async def decisions(self, visitor: Visitor) -> list[Any]:
        return await self.rows(
            "SELECT * FROM proactive_decisions WHERE customer_id = $1 ORDER BY at, id",
            visitor.customer_id,
        )


WEBCHAT = {
    "type": "webchat",
    "name": "Website chat",
    "config": {"allowed_origins": ["https://www.acme.example"]},
}


async def make_world(app: Any, client: httpx.AsyncClient, **signup: Any) -> World:
    """A tenant with a webchat channel that routes nowhere yet."""
    tenant = await create_tenant(client, **signup)
    r = await client.post("/v1/channels", json=WEBCHAT, headers=tenant["headers"])
    assert r.status_code == 201, r.text
    return World(app, client, tenant, r.json()["id"])


async def make_world_with_queue(
    app: Any, client: httpx.AsyncClient, channels: list[str]
) -> tuple[World, str]:
    """A tenant whose webchat channel routes to a queue taking ``channels``."""
    tenant = await create_tenant(client)
    r = await client.post(
        "/v1/queues",
        json={"name": "Sales", "channels": channels},
        headers=tenant["headers"],
    )
    assert r.status_code == 201, r.text
    queue_id = r.json()["id"]
    body = WEBCHAT | {"config": WEBCHAT["config"] | {"queue_id": queue_id}}  # type: ignore[operator]
    r = await client.post("/v1/channels", json=body, headers=tenant["headers"])
    assert r.status_code == 201, r.text
    return World(app, client, tenant, r.json()["id"]), queue_id


def at(iso: str) -> datetime:
    return datetime.fromisoformat(iso).astimezone(UTC)


MINUTE = timedelta(minutes=1)
