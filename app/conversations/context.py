"""What an agent sees with an offer of a conversation, so the customer never repeats
themselves: who the customer is (profile, identities, consents), what they did lately
(timeline across conversations, pages seen), what the contact flow asked, a warm
transfer's note, and the latest messages of the conversation (notes included)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from app.conversations.schemas import MESSAGE_COLUMNS, message_read
from app.customers.profiles import survivor_id
from app.db.tenant import TenantScope
from app.routing.snapshots import decode_json

RECENT_INTERACTIONS = 10
PAGE_TRAIL = 20
RECENT_MESSAGES = 20


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


async def build_context(
    conn: asyncpg.Connection,
    scope: TenantScope,
    conversation_id: uuid.UUID,
    contact_attributes: dict[str, Any],
) -> dict[str, Any]:
    """The offer's context (JSON-ready). ``contact_attributes``: the routing contact's
    attributes (``flow_answers``, ``transfer``). Empty when the conversation is gone."""
    conv = await conn.fetchrow(
        "SELECT id, customer_id, channel, subject, state, created_at FROM conversations "
        "WHERE tenant_id = $1 AND id = $2",
        scope.tenant_id,
        conversation_id,
    )
    if conv is None:
        return {}
    # A merge moves the conversations in its transaction, but one opened while the
    # merge ran (its snapshot did not see it) still names the absorbed profile.
    customer_id = await survivor_id(conn, scope, conv["customer_id"]) or conv["customer_id"]
    transfer = contact_attributes.get("transfer")
    return {
        "conversation": {
            "id": str(conv["id"]),
            "channel": conv["channel"],
            "subject": conv["subject"],
            "state": conv["state"],
            "created_at": _iso(conv["created_at"]),
        },
        "customer": await _customer(conn, scope, customer_id),
        "recent_interactions": await _interactions(conn, scope, customer_id),
        "page_trail": await _pages(conn, scope, customer_id),
        "flow_answers": contact_attributes.get("flow_answers") or {},
        "transfer": transfer if isinstance(transfer, dict) else None,
        "messages": await _messages(conn, scope, conversation_id),
    }


async def _customer(
    conn: asyncpg.Connection, scope: TenantScope, customer_id: uuid.UUID
) -> dict[str, Any]:
    row = await conn.fetchrow(
        "SELECT id, display_name, attributes, timezone, language, created_at, last_seen_at "
        "FROM customers WHERE tenant_id = $1 AND id = $2",
        scope.tenant_id,
        customer_id,
    )
    identities = await conn.fetch(
        "SELECT kind, value, verified, bounced_at, last_seen_at FROM customer_identities "
        "WHERE tenant_id = $1 AND customer_id = $2 ORDER BY last_seen_at DESC NULLS LAST, id",
        scope.tenant_id,
        customer_id,
    )
    consents = await conn.fetch(
        "SELECT channel, status, updated_at FROM customer_consents "
        "WHERE tenant_id = $1 AND customer_id = $2 ORDER BY channel",
        scope.tenant_id,
        customer_id,
    )
    if row is None:
        return {"id": str(customer_id)}
    return {
        "id": str(row["id"]),
        "display_name": row["display_name"],
        "attributes": decode_json(row["attributes"]),
        "timezone": row["timezone"],
        "language": row["language"],
        "customer_since": _iso(row["created_at"]),
        "last_seen_at": _iso(row["last_seen_at"]),
        "identities": [
            {
                "kind": i["kind"],
                "value": i["value"],
                "verified": i["verified"],
                "bounced": i["bounced_at"] is not None,
            }
            for i in identities
        ],
        "consents": [
            {"channel": c["channel"], "status": c["status"], "updated_at": _iso(c["updated_at"])}
            for c in consents
        ],
    }


async def _interactions(
    conn: asyncpg.Connection, scope: TenantScope, customer_id: uuid.UUID
) -> list[dict[str, Any]]:
    """The customer's latest timeline events, across all their conversations."""
    rows = await conn.fetch(
        "SELECT at, kind, channel, conversation_id, summary FROM timeline_events "
        "WHERE tenant_id = $1 AND customer_id = $2 ORDER BY at DESC, id DESC LIMIT $3",
        scope.tenant_id,
        customer_id,
        RECENT_INTERACTIONS,
    )
    return [
        {
            "at": _iso(r["at"]),
            "kind": r["kind"],
            "channel": r["channel"],
            "conversation_id": r["conversation_id"] and str(r["conversation_id"]),
            "summary": decode_json(r["summary"]),
        }
        for r in rows
    ]


async def _pages(
    conn: asyncpg.Connection, scope: TenantScope, customer_id: uuid.UUID
) -> list[dict[str, Any]]:
    """The last pages the visitor saw, oldest first (the order they browsed)."""
    rows = await conn.fetch(
        "SELECT url, title, referrer, at, dwell_seconds FROM page_views "
        "WHERE tenant_id = $1 AND customer_id = $2 ORDER BY at DESC, id DESC LIMIT $3",
        scope.tenant_id,
        customer_id,
        PAGE_TRAIL,
    )
    return [
        {
            "url": r["url"],
            "title": r["title"],
            "referrer": r["referrer"],
            "at": _iso(r["at"]),
            "dwell_seconds": r["dwell_seconds"],
        }
        for r in reversed(rows)
    ]


async def _messages(
    conn: asyncpg.Connection, scope: TenantScope, conversation_id: uuid.UUID
) -> list[dict[str, Any]]:
    """The conversation's last messages, oldest first; internal notes included."""
    rows = await conn.fetch(
        f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE tenant_id = $1 "  # noqa: S608
        "AND conversation_id = $2 ORDER BY created_at DESC, id DESC LIMIT $3",
        scope.tenant_id,
        conversation_id,
        RECENT_MESSAGES,
    )
    return [message_read(r).model_dump(mode="json") for r in reversed(rows)]
