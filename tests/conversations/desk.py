"""Factories for the agent-actions tests: a routed web chat conversation, a customer
writing, an agent holding the conversation (offered and accepted through the API)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from app.conversations.service import ChannelRef, InboundContent, Received, receive
from app.customers.service import resolve_identity
from app.db import bootstrap
from app.db.tenant import bind_tenant, mint_scope
from app.routing.worker import Router
from tests.routing.conftest import go_available, running_router, wait_for, wait_offer

VISITOR = "v_visitor_0001"


@pytest.fixture
async def worker(
    db_urls: bootstrap.DatabaseUrls, clean_db: asyncpg.Connection
) -> AsyncIterator[Router]:
    """A routing worker on the test database (use with ``usefixtures``)."""
    async with running_router(db_urls) as r:
        yield r


async def webchat_channel(
    client: httpx.AsyncClient, tenant: dict[str, Any], queue_id: str
) -> dict[str, Any]:
    body = {
        "type": "webchat",
        "name": f"Chat {uuid.uuid4().hex[:6]}",
        "config": {"allowed_origins": ["https://shop.example.com"], "queue_id": queue_id},
    }
    r = await client.post("/v1/channels", json=body, headers=tenant["headers"])
    assert r.status_code == 201, r.text
    channel: dict[str, Any] = r.json()
    return channel


async def email_channel(client: httpx.AsyncClient, tenant: dict[str, Any]) -> dict[str, Any]:
    body = {
        "type": "email",
        "name": f"Mail {uuid.uuid4().hex[:6]}",
        "config": {"local_part": "help-" + uuid.uuid4().hex[:8]},
    }
    r = await client.post("/v1/channels", json=body, headers=tenant["headers"])
    assert r.status_code == 201, r.text
    channel: dict[str, Any] = r.json()
    return channel


def ref_of(channel: dict[str, Any]) -> ChannelRef:
    return ChannelRef(uuid.UUID(channel["id"]), channel["type"], dict(channel["config"]))


async def customer_writes(
    app: Any,
    tenant: dict[str, Any],
    channel: dict[str, Any],
    text: str = "Hello, my order 4711 never arrived",
    *,
    visitor: str = VISITOR,
    name: str | None = "Carla Customer",
    conversation_id: uuid.UUID | None = None,
) -> Received:
    """A web chat visitor's message, through the conversation core (what the widget API
    does), in a transaction bound to the tenant."""
    scope = mint_scope(uuid.UUID(tenant["tenant"]["id"]))
    async with app.state.session_factory() as session, session.begin():
        await bind_tenant(session, scope)
        who = await resolve_identity(session, scope, "webchat", visitor, display_name=name)
        return await receive(
            session,
            scope,
            tenant["tenant"].get("plan", "starter"),
            channel=ref_of(channel),
            identity=who,
            content=InboundContent(text=text),
            store=app.state.object_store,
            conversation_id=conversation_id,
        )


async def tenant_sql(app: Any, tenant: dict[str, Any], sql: str, *args: Any) -> Any:
    """Run one statement as the runtime role, bound to the tenant (row-level security)."""
    from app.routing.connection import raw

    scope = mint_scope(uuid.UUID(tenant["tenant"]["id"]))
    async with app.state.session_factory() as session, session.begin():
        await bind_tenant(session, scope)
        conn = await raw(session)
        return await conn.fetch(sql, *args)


async def take(
    client: httpx.AsyncClient, agent: dict[str, Any], contact_id: str | None = None
) -> dict[str, Any]:
    """The agent goes available, is offered the contact and accepts it."""
    await go_available(client, agent)
    offer = await wait_offer(client, agent, contact_id)
    r = await client.post(f"/v1/reservations/{offer['id']}/accept", headers=agent["headers"])
    assert r.status_code == 200, r.text
    return offer


async def conversation(
    client: httpx.AsyncClient, who: dict[str, Any], cid: uuid.UUID | str
) -> dict[str, Any]:
    r = await client.get(f"/v1/conversations/{cid}", headers=who["headers"])
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def wait_state(
    client: httpx.AsyncClient, who: dict[str, Any], cid: uuid.UUID | str, state: str
) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        conv = await conversation(client, who, cid)
        return conv if conv["state"] == state else None

    found: dict[str, Any] = await wait_for(reached)
    return found


def post(who: dict[str, Any], **headers: str) -> dict[str, str]:
    return {**who["headers"], **headers}


async def topics(
    conn: asyncpg.Connection, cid: uuid.UUID, audience: str | None = None
) -> list[str]:
    rows = await conn.fetch(
        "SELECT topic FROM conversation_events WHERE conversation_id = $1 "
        "AND ($2::text IS NULL OR audience = $2) ORDER BY id",
        cid,
        audience,
    )
    return [r["topic"] for r in rows]


def problem_of(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body: dict[str, Any] = r.json()
    return body
