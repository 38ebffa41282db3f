"""Delivery receipts: a provider's word on an outbound message moves its status forward
only (queued < sent < delivered < read; failed only before delivered), so late or
replayed receipts change nothing; a receipt that beats the send it reports on is kept
(``webhook_receipts``) and applied by that send (docs/decisions/0018)."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from app.conversations.events import post_event
from app.db.tenant import TenantScope
from app.routing.connection import raw

_STATUS_RANK = {"queued": 0, "sent": 1, "delivered": 2, "read": 3}


async def update_delivery(
    session: AsyncSession,
    scope: TenantScope,
    *,
    channel_id: uuid.UUID,
    provider_message_id: str,
    status: str,
    at: datetime,
    error: str | None = None,
) -> bool:
    """A provider's delivery receipt: statuses only move forward (a late ``sent`` after
    ``read`` changes nothing); ``failed`` records the provider's reason. True when the
    message changed. A receipt that arrives before the send that it reports on has
    committed (providers call back fast) is kept and applied by that send."""
    conn = await raw(session)
    found = await conn.fetchrow(
        "SELECT id, conversation_id FROM messages WHERE tenant_id = $1 "
        "AND channel_id = $2 AND provider_message_id = $3",
        scope.tenant_id,
        channel_id,
        provider_message_id,
    )
    if found is None:
        await conn.execute(
            "INSERT INTO webhook_receipts (tenant_id, channel_id, key, received_at) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            scope.tenant_id,
            channel_id,
            early_receipt_key(provider_message_id, status),
            at,
        )
        return False
    # Writers of a conversation's events hold its row first (then the message): event
    # ids follow commit order, so a stream resuming with ``since`` misses nothing.
    await conn.execute(
        "SELECT 1 FROM conversations WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
        scope.tenant_id,
        found["conversation_id"],
    )
    return await apply_status(conn, scope, found["id"], status, at, error)


def early_receipt_key(provider_message_id: str, status: str) -> str:
    return f"early:{status}:{provider_message_id}"[:200]


async def apply_early_receipts(
    conn: asyncpg.Connection,
    scope: TenantScope,
    channel_id: uuid.UUID,
    message_id: uuid.UUID,
    provider_message_id: str,
) -> None:
    """Receipts for ``provider_message_id`` that came before its send committed (the
    caller holds the conversation's row)."""
    for status in ("sent", "delivered", "read", "failed"):
        at = await conn.fetchval(
            "DELETE FROM webhook_receipts WHERE tenant_id = $1 AND channel_id = $2 "
            "AND key = $3 RETURNING received_at",
            scope.tenant_id,
            channel_id,
            early_receipt_key(provider_message_id, status),
        )
        if at is not None:
            await apply_status(conn, scope, message_id, status, at, None)


async def apply_status(
    conn: asyncpg.Connection,
    scope: TenantScope,
    message_id: uuid.UUID,
    status: str,
    at: datetime,
    error: str | None,
) -> bool:
    """Move a message's delivery status forward (the conversation's row is held)."""
    row = await conn.fetchrow(
        "SELECT id, conversation_id, status FROM messages WHERE tenant_id = $1 AND id = $2 "
        "FOR UPDATE",
        scope.tenant_id,
        message_id,
    )
    if row is None:
        return False
    current = row["status"]
    if status == "failed":
        if current in ("delivered", "read", "failed"):
            return False
    elif current == "failed" or _STATUS_RANK.get(status, -1) <= _STATUS_RANK.get(current, -1):
        return False
    column = {"sent": "sent_at", "delivered": "delivered_at", "read": "read_at"}.get(status)
    sets = "status = $3, error = $4" + (f", {column} = coalesce({column}, $5)" if column else "")
    await conn.execute(
        f"UPDATE messages SET {sets} WHERE tenant_id = $1 AND id = $2",  # noqa: S608 - constants
        scope.tenant_id,
        row["id"],
        status,
        (error or None) and error[:500] if error else None,
        *([at] if column else []),
    )
    await post_event(
        conn,
        scope,
        row["conversation_id"],
        "message.status",
        {"message_id": str(row["id"]), "status": status, "error": error, "at": at.isoformat()},
    )
    return True
