"""Queries of the agents' side of conversations (asyncpg, inside the caller's
tenant-bound transaction: row-level security stands behind every ``tenant_id = $1``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from app.conversations.schemas import CONVERSATION_COLUMNS, MESSAGE_COLUMNS
from app.customers.service import add_timeline
from app.db.tenant import TenantScope

LIVE_RESERVATION = ("offered", "in_progress", "wrap_up")


async def get(
    conn: asyncpg.Connection, scope: TenantScope, conversation_id: uuid.UUID, *, lock: bool = False
) -> asyncpg.Record | None:
    sql = "SELECT * FROM conversations WHERE tenant_id = $1 AND id = $2"
    row: asyncpg.Record | None = await conn.fetchrow(
        sql + " FOR UPDATE" if lock else sql,
        scope.tenant_id,
        conversation_id,
    )
    return row


async def participants(
    conn: asyncpg.Connection, scope: TenantScope, conversation_id: uuid.UUID
) -> list[asyncpg.Record]:
    rows = await conn.fetch(
        "SELECT id, kind, role, state, agent_id, user_id, name, joined_at, left_at "
        "FROM conversation_participants WHERE tenant_id = $1 AND conversation_id = $2 "
        "ORDER BY joined_at, id",
        scope.tenant_id,
        conversation_id,
    )
    return list(rows)


async def live_participant(
    conn: asyncpg.Connection, scope: TenantScope, conversation_id: uuid.UUID, who: uuid.UUID
) -> asyncpg.Record | None:
    """The caller's current part (agent or supervisor; invited counts), if any."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT * FROM conversation_participants WHERE tenant_id = $1 AND conversation_id = $2 "
        "AND coalesce(agent_id, user_id) = $3 AND state <> 'left'",
        scope.tenant_id,
        conversation_id,
        who,
    )
    return row


async def ever_took_part(
    conn: asyncpg.Connection,
    scope: TenantScope,
    conversation_id: uuid.UUID,
    who: uuid.UUID,
    *,
    role: str | None = None,
) -> bool:
    found = await conn.fetchval(
        "SELECT 1 FROM conversation_participants WHERE tenant_id = $1 AND conversation_id = $2 "
        "AND coalesce(agent_id, user_id) = $3 AND ($4::text IS NULL OR role = $4) LIMIT 1",
        scope.tenant_id,
        conversation_id,
        who,
        role,
    )
    return found is not None


async def live_reservation(
    conn: asyncpg.Connection, scope: TenantScope, conversation_id: uuid.UUID, agent_id: uuid.UUID
) -> asyncpg.Record | None:
    """The agent's offer or work on one of the conversation's contacts, if any."""
    row: asyncpg.Record | None = await conn.fetchrow(
        """
        SELECT r.id, r.contact_id, r.state, r.queue_id FROM reservations r
          JOIN contacts c ON c.tenant_id = r.tenant_id AND c.id = r.contact_id
         WHERE r.tenant_id = $1 AND r.agent_id = $3 AND c.conversation_id = $2
           AND r.state = ANY($4::text[])
         ORDER BY r.offered_at DESC LIMIT 1
        """,
        scope.tenant_id,
        conversation_id,
        agent_id,
        list(LIVE_RESERVATION),
    )
    return row


async def _of_contact(
    conn: asyncpg.Connection, scope: TenantScope, sql: str, contact_id: uuid.UUID | None
) -> asyncpg.Record | None:
    """The row ``sql`` finds for ``($1 tenant, $2 contact)``; None without a contact."""
    if contact_id is None:
        return None
    row: asyncpg.Record | None = await conn.fetchrow(sql, scope.tenant_id, contact_id)
    return row


async def work_on(
    conn: asyncpg.Connection, scope: TenantScope, contact_id: uuid.UUID | None
) -> asyncpg.Record | None:
    """The live (accepted) work on a contact: its reservation in progress or wrap-up."""
    sql = (
        "SELECT * FROM reservations WHERE tenant_id = $1 AND contact_id = $2 "
        "AND state IN ('in_progress', 'wrap_up')"
    )
    return await _of_contact(conn, scope, sql, contact_id)


async def contact(
    conn: asyncpg.Connection, scope: TenantScope, contact_id: uuid.UUID | None
) -> asyncpg.Record | None:
    sql = (
        "SELECT id, state, queue_id, priority, attributes, agent_id FROM contacts "
        "WHERE tenant_id = $1 AND id = $2"
    )
    return await _of_contact(conn, scope, sql, contact_id)


async def agent(
    conn: asyncpg.Connection, scope: TenantScope, agent_id: uuid.UUID
) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT id, display_name, status, routing_profile_id FROM agents "
        "WHERE tenant_id = $1 AND id = $2",
        scope.tenant_id,
        agent_id,
    )
    return row


async def user_name(conn: asyncpg.Connection, scope: TenantScope, user_id: uuid.UUID) -> str:
    """What colleagues see for a supervisor: their agent display name if they have one,
    else their role ("Supervisor"): a person's email is not shown in conversations."""
    row = await conn.fetchrow(
        "SELECT u.role, a.display_name FROM users u LEFT JOIN agents a "
        "ON a.tenant_id = u.tenant_id AND a.id = u.id WHERE u.tenant_id = $1 AND u.id = $2",
        scope.tenant_id,
        user_id,
    )
    if row is None:
        return "Staff"
    return str(row["display_name"] or str(row["role"]).capitalize())


async def queue(
    conn: asyncpg.Connection, scope: TenantScope, queue_id: uuid.UUID
) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT id, name, channels, wrap_up_codes FROM queues WHERE tenant_id = $1 AND id = $2",
        scope.tenant_id,
        queue_id,
    )
    return row


async def agent_queue_for(
    conn: asyncpg.Connection,
    scope: TenantScope,
    agent_id: uuid.UUID,
    channel: str,
    prefer: uuid.UUID | None,
) -> uuid.UUID | None:
    """A queue the agent's routing profile serves that takes ``channel``: ``prefer``
    (the conversation's queue) when it is one, else the profile's first by priority."""
    rows = await conn.fetch(
        """
        SELECT q.id FROM agents a
          JOIN routing_profile_queues pq
            ON pq.tenant_id = a.tenant_id AND pq.routing_profile_id = a.routing_profile_id
          JOIN queues q ON q.tenant_id = pq.tenant_id AND q.id = pq.queue_id
         WHERE a.tenant_id = $1 AND a.id = $2 AND $3 = ANY(q.channels)
         ORDER BY pq.priority, q.id
        """,
        scope.tenant_id,
        agent_id,
        channel,
    )
    ids = [r["id"] for r in rows]
    if prefer is not None and prefer in ids:
        return prefer
    return ids[0] if ids else None


async def list_page(
    conn: asyncpg.Connection,
    scope: TenantScope,
    *,
    limit: int,
    after_id: uuid.UUID | None,
    state: str | None,
    customer_id: uuid.UUID | None,
    live_for: uuid.UUID | None,
    seen_by: uuid.UUID | None,
) -> list[asyncpg.Record]:
    """Newest first, ``limit + 1`` rows. ``live_for``: only those the person takes part
    in now; ``seen_by``: only those they ever took part in (or hold an offer of)."""
    rows = await conn.fetch(
        f"""
        SELECT {CONVERSATION_COLUMNS} FROM conversations c
         WHERE c.tenant_id = $1
           AND ($2::uuid IS NULL OR c.id < $2)
           AND ($3::text IS NULL OR c.state = $3)
           AND ($4::uuid IS NULL OR c.customer_id = $4)
           AND ($5::uuid IS NULL OR EXISTS (
                 SELECT 1 FROM conversation_participants p
                  WHERE p.tenant_id = c.tenant_id AND p.conversation_id = c.id
                    AND coalesce(p.agent_id, p.user_id) = $5 AND p.state <> 'left'))
           AND ($6::uuid IS NULL OR EXISTS (
                 SELECT 1 FROM conversation_participants p
                  WHERE p.tenant_id = c.tenant_id AND p.conversation_id = c.id
                    AND coalesce(p.agent_id, p.user_id) = $6)
               OR EXISTS (
                 SELECT 1 FROM reservations r JOIN contacts k
                     ON k.tenant_id = r.tenant_id AND k.id = r.contact_id
                  WHERE r.tenant_id = c.tenant_id AND r.agent_id = $6
                    AND k.conversation_id = c.id AND r.state = ANY($8::text[])))
         ORDER BY c.id DESC LIMIT $7
        """,  # noqa: S608 - the columns are a constant
        scope.tenant_id,
        after_id,
        state,
        customer_id,
        live_for,
        seen_by,
        limit + 1,
        list(LIVE_RESERVATION),
    )
    return list(rows)


async def messages_page(
    conn: asyncpg.Connection,
    scope: TenantScope,
    conversation_id: uuid.UUID,
    *,
    limit: int,
    after_id: uuid.UUID | None,
) -> list[asyncpg.Record]:
    """Oldest first, ``limit + 1`` rows; the cursor is the last message's id (its
    ``(created_at, id)`` place: ids alone do not order messages of one millisecond)."""
    rows = await conn.fetch(
        f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE tenant_id = $1 "  # noqa: S608
        "AND conversation_id = $2 AND ($3::uuid IS NULL OR (created_at, id) > "
        "(SELECT created_at, id FROM messages WHERE tenant_id = $1 AND id = $3)) "
        "ORDER BY created_at, id LIMIT $4",
        scope.tenant_id,
        conversation_id,
        after_id,
        limit + 1,
    )
    return list(rows)


async def message(
    conn: asyncpg.Connection, scope: TenantScope, message_id: uuid.UUID
) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE tenant_id = $1 AND id = $2",  # noqa: S608
        scope.tenant_id,
        message_id,
    )
    return row


async def events_since(
    conn: asyncpg.Connection,
    scope: TenantScope,
    conversation_id: uuid.UUID,
    since: int,
    limit: int,
) -> list[asyncpg.Record]:
    rows = await conn.fetch(
        "SELECT id, topic, audience, payload, created_at FROM conversation_events "
        "WHERE tenant_id = $1 AND conversation_id = $2 AND id > $3 ORDER BY id LIMIT $4",
        scope.tenant_id,
        conversation_id,
        since,
        limit,
    )
    return list(rows)


async def latest_event_id(
    conn: asyncpg.Connection, scope: TenantScope, conversation_id: uuid.UUID
) -> int:
    found = await conn.fetchval(
        "SELECT max(id) FROM conversation_events WHERE tenant_id = $1 AND conversation_id = $2",
        scope.tenant_id,
        conversation_id,
    )
    return int(found or 0)


async def last_typing_at(
    conn: asyncpg.Connection, scope: TenantScope, conversation_id: uuid.UUID, who: uuid.UUID
) -> Any:
    return await conn.fetchval(
        "SELECT created_at FROM conversation_events WHERE tenant_id = $1 "
        "AND conversation_id = $2 AND topic = 'typing' AND payload->>'participant_id' = $3::text "
        "ORDER BY id DESC LIMIT 1",
        scope.tenant_id,
        conversation_id,
        str(who),
    )


async def timeline(
    conn: asyncpg.Connection,
    scope: TenantScope,
    conv: asyncpg.Record,
    kind: str,
    *,
    at: datetime,
    ref_id: uuid.UUID | None = None,
    summary: dict[str, Any] | None = None,
) -> None:
    """An interaction of the conversation ``conv`` on its customer's timeline."""
    await add_timeline(
        conn,
        scope,
        customer_id=conv["customer_id"],
        kind=kind,
        at=at,
        conversation_id=conv["id"],
        channel=conv["channel"],
        ref_id=ref_id,
        summary=summary,
    )
