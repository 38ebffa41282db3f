"""Factories for customer profile tests: profiles through the API, web chat messages
through the conversation core (as the widget's ingress calls it)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx

from app.conversations.service import ChannelRef, InboundContent, Received, receive
from app.customers.service import resolve_identity
from app.db.base import utcnow, uuid7
from app.db.tenant import bind_tenant, mint_scope

PROBLEM_JSON = "application/problem+json"


def problem(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The problem+json body of a refusal, checked for status (and code)."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = r.json()
    if code is not None:
        assert body["code"] == code, body
    return body


async def create_customer(
    client: httpx.AsyncClient, tenant: dict[str, Any], **body: Any
) -> dict[str, Any]:
    full = {"identities": [{"kind": "email", "value": f"c-{uuid.uuid4().hex[:8]}@example.com"}]}
    r = await client.post("/v1/customers", json=full | body, headers=tenant["headers"])
    assert r.status_code == 201, r.text
    customer: dict[str, Any] = r.json()
    return customer


async def get_customer(
    client: httpx.AsyncClient, tenant: dict[str, Any], customer_id: str
) -> dict[str, Any]:
    r = await client.get(f"/v1/customers/{customer_id}", headers=tenant["headers"])
    assert r.status_code == 200, r.text
    customer: dict[str, Any] = r.json()
    return customer


async def timeline(
    client: httpx.AsyncClient, tenant: dict[str, Any], customer_id: str, **params: Any
) -> dict[str, Any]:
    r = await client.get(
        f"/v1/customers/{customer_id}/timeline", params=params, headers=tenant["headers"]
    )
    assert r.status_code == 200, r.text
    page: dict[str, Any] = r.json()
    return page


async def webchat(client: httpx.AsyncClient, tenant: dict[str, Any]) -> ChannelRef:
    """A web chat channel made through the API (no queue: conversations stay open)."""
    r = await client.post(
        "/v1/channels",
        json={
            "type": "webchat",
            "name": f"Chat {uuid.uuid4().hex[:6]}",
            "config": {"allowed_origins": ["https://shop.example.com"]},
        },
        headers=tenant["headers"],
    )
    assert r.status_code == 201, r.text
    ch = r.json()
    return ChannelRef(uuid.UUID(ch["id"]), "webchat", ch["config"])


async def say(
    app: Any, tenant: dict[str, Any], channel: ChannelRef, visitor: str, text: str
) -> Received:
    """A visitor's message, taken as the widget's ingress takes it."""
    scope = mint_scope(uuid.UUID(tenant["tenant"]["id"]))
    async with app.state.session_factory() as session, session.begin():
        await bind_tenant(session, scope)
        who = await resolve_identity(session, scope, "webchat", visitor)
        return await receive(
            session,
            scope,
            tenant["tenant"].get("plan", "starter"),
            channel=channel,
            identity=who,
            content=InboundContent(text=text),
            store=app.state.object_store,
        )


async def customer_of(conn: asyncpg.Connection, received: Received) -> uuid.UUID:
    value = await conn.fetchval(
        "SELECT customer_id FROM conversations WHERE id = $1", received.conversation_id
    )
    assert isinstance(value, uuid.UUID)
    return value


async def page_view(
    conn: asyncpg.Connection,
    tenant: dict[str, Any],
    customer_id: uuid.UUID,
    identity_id: uuid.UUID,
    channel: ChannelRef,
    url: str,
) -> uuid.UUID:
    """A page view row as the widget records it (admin connection)."""
    view_id = uuid7()
    await conn.execute(
        "INSERT INTO page_views (tenant_id, id, customer_id, identity_id, channel_id, url, at, "
        "attributes) VALUES ($1, $2, $3, $4, $5, $6, $7, '{}'::jsonb)",
        uuid.UUID(tenant["tenant"]["id"]),
        view_id,
        customer_id,
        identity_id,
        channel.id,
        url,
        utcnow(),
    )
    return view_id


async def proactive_decision(
    conn: asyncpg.Connection, tenant: dict[str, Any], customer_id: uuid.UUID
) -> uuid.UUID:
    decision_id = uuid7()
    await conn.execute(
        "INSERT INTO proactive_decisions (tenant_id, id, customer_id, channel, decision, "
        "reason, detail, at) VALUES ($1, $2, $3, 'webchat', 'contact', 'rule-matched', "
        "'{}'::jsonb, $4)",
        uuid.UUID(tenant["tenant"]["id"]),
        decision_id,
        customer_id,
        utcnow(),
    )
    return decision_id
