"""Helpers for the webhook-ingress and outbound tests: tenants with a queue that takes
sms and messaging, messaging channels made through the API, requests signed the way
each provider signs them, agent replies, and the rows they leave."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import uuid
from typing import Any
from urllib.parse import urlencode

import asyncpg
import httpx

from app.conversations.delivery import drain
from app.conversations.outbound import send_message
from app.conversations.schemas import MessageRead
from app.db.engine import run_after_commit
from app.db.tenant import bind_tenant, mint_scope
from app.messaging.providers import sandbox, twilio
from tests.routing.conftest import staffed_tenant

TWIML_EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


async def messaging_tenant(client: httpx.AsyncClient) -> dict[str, Any]:
    """A tenant whose queue takes sms and messaging conversations (no agents)."""
    return await staffed_tenant(client, agents=0, queue={"channels": ["sms", "messaging"]})


async def create_channel(
    client: httpx.AsyncClient,
    tenant: dict[str, Any],
    channel_type: str,
    provider: str,
    account_id: str,
    credentials: dict[str, str] | None = None,
    **config: Any,
) -> dict[str, Any]:
    """A messaging channel routed to the tenant's queue; the body includes the
    webhook secret (shown once)."""
    body: dict[str, Any] = {
        "type": channel_type,
        "name": f"{channel_type} {uuid.uuid4().hex[:6]}",
        "config": {
            "provider": provider,
            "provider_account_id": account_id,
            "queue_id": tenant["queue"]["id"],
        }
        | config,
    }
    if credentials is not None:
        body["credentials"] = credentials
    r = await client.post("/v1/channels", json=body, headers=tenant["headers"])
    assert r.status_code == 201, r.text
    channel: dict[str, Any] = r.json()
    return channel


async def disable(client: httpx.AsyncClient, tenant: dict[str, Any], channel_id: str) -> None:
    r = await client.get(f"/v1/channels/{channel_id}", headers=tenant["headers"])
    r = await client.patch(
        f"/v1/channels/{channel_id}",
        json={"enabled": False},
        headers=tenant["headers"] | {"If-Match": r.headers["etag"]},
    )
    assert r.status_code == 200, r.text


# -- signed requests ----------------------------------------------------------------------


def public(app: Any, path: str) -> str:
    return str(app.state.settings.public_url).rstrip("/") + path


async def post_twilio(
    client: httpx.AsyncClient,
    app: Any,
    path: str,
    params: dict[str, str],
    token: str,
    *,
    signed_url: str | None = None,
) -> httpx.Response:
    """A form post signed as Twilio signs it: over the URL configured at Twilio (our
    public URL) and the sorted parameters."""
    url = signed_url or public(app, path)
    signature = twilio.signature(token, url, list(params.items()))
    return await client.post(
        path,
        content=urlencode(params).encode(),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        },
    )


async def post_meta(
    client: httpx.AsyncClient,
    channel_type: str,
    payload: dict[str, Any],
    app_secret: str,
    *,
    path: str | None = None,
) -> httpx.Response:
    body = json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return await client.post(
        path or f"/v1/webhooks/{channel_type}/meta",
        content=body,
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": signature},
    )


def wechat_query(token: str, timestamp: int, nonce: str | None = None) -> dict[str, str]:
    nonce = nonce or str(secrets.randbelow(10**9))
    parts = sorted([token, str(timestamp), nonce])
    digest = hashlib.sha1("".join(parts).encode(), usedforsecurity=False).hexdigest()
    return {"signature": digest, "timestamp": str(timestamp), "nonce": nonce}


async def post_sandbox(
    client: httpx.AsyncClient,
    path: str,
    payload: dict[str, Any],
    secret: str,
    timestamp: int,
) -> httpx.Response:
    body = json.dumps(payload).encode()
    return await client.post(
        path,
        content=body,
        headers={
            "Content-Type": "application/json",
            sandbox.TIMESTAMP_HEADER: str(timestamp),
            sandbox.SIGNATURE_HEADER: sandbox.signature(secret, str(timestamp), body),
        },
    )


# -- replies --------------------------------------------------------------------------------


async def reply(
    app: Any, tenant: dict[str, Any], conversation_id: uuid.UUID | str, text: str, **kw: Any
) -> MessageRead:
    """An agent's reply, queued in its transaction and delivered after the commit."""
    scope = mint_scope(uuid.UUID(tenant["tenant"]["id"]))
    async with app.state.session_factory() as session:
        async with session.begin():
            await bind_tenant(session, scope)
            message = await send_message(
                session,
                scope,
                conversation_id=uuid.UUID(str(conversation_id)),
                text=text,
                sender_kind="agent",
                agent_id=None,
                store=app.state.object_store,
                settings=app.state.settings,
                factory=app.state.session_factory,
                **kw,
            )
        await run_after_commit(session)
    await drain()
    return message


# -- rows -----------------------------------------------------------------------------------


async def counts(db: asyncpg.Connection) -> dict[str, int]:
    """How many rows ingress may have written, table by table."""
    out = {}
    for table in (
        "customers",
        "customer_identities",
        "conversations",
        "messages",
        "contacts",
        "usage_events",
        "webhook_receipts",
        "attachments",
    ):
        out[table] = int(await db.fetchval(f"SELECT count(*) FROM {table}"))
    return out


async def only_message(db: asyncpg.Connection, direction: str = "inbound") -> asyncpg.Record:
    rows = await db.fetch("SELECT * FROM messages WHERE direction = $1", direction)
    assert len(rows) == 1, rows
    return rows[0]


async def message(db: asyncpg.Connection, message_id: uuid.UUID | str) -> asyncpg.Record:
    row = await db.fetchrow("SELECT * FROM messages WHERE id = $1", uuid.UUID(str(message_id)))
    assert row is not None
    return row
