"""Glue between routing and conversations, called by ``app.routing.reservations`` when
the reservation's contact routes a conversation (``contacts.conversation_id``).

- accept: the conversation is ``assigned`` to the agent (participant ``owner``), the
  customer is told who joined (display name only). When the accepted contact is the
  conversation's warm transfer, the previous owner's work is completed (handled minutes
  on the ledger) and they leave the conversation.
- complete (the agent ends the reservation through the routing API): the conversation
  waits for the customer (``pending_customer``); their next message routes it again.

Lock order, everywhere a conversation and routing rows meet: the conversation first,
then agent presence, contacts, reservations (the routing order). The routing workers
never lock conversations, so they cannot deadlock with this.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from app.conversations import repository as repo
from app.conversations.events import post_event
from app.db.base import uuid7
from app.db.tenant import TenantScope


async def lock_for_contact(
    conn: asyncpg.Connection, scope: TenantScope, contact_id: uuid.UUID
) -> asyncpg.Record | None:
    """The conversation a contact routes, locked; None for other contacts."""
    cid = await conn.fetchval(
        "SELECT conversation_id FROM contacts WHERE tenant_id = $1 AND id = $2",
        scope.tenant_id,
        contact_id,
    )
    if cid is None:
        return None
    return await repo.get(conn, scope, cid, lock=True)


async def before_accept(
    conn: asyncpg.Connection, scope: TenantScope, contact_id: uuid.UUID, agent_id: uuid.UUID
) -> asyncpg.Record | None:
    """Lock what accepting this contact will change, in order: the conversation, and for
    a warm transfer both agents' presence rows (in key order, as the routing workers
    lock them), since the previous owner's work completes in the same transaction."""
    conv = await lock_for_contact(conn, scope, contact_id)
    if conv is not None and conv["transfer_contact_id"] == contact_id and conv["agent_id"]:
        await conn.execute(
            "SELECT 1 FROM agent_presence WHERE tenant_id = $1 AND agent_id = ANY($2::uuid[]) "
            "ORDER BY agent_id FOR UPDATE",
            scope.tenant_id,
            sorted({agent_id, conv["agent_id"]}),
        )
    return conv


async def agent_name(conn: asyncpg.Connection, scope: TenantScope, agent_id: uuid.UUID) -> str:
    found = await repo.agent(conn, scope, agent_id)
    return str(found["display_name"]) if found else "Agent"


async def join_as(
    conn: asyncpg.Connection,
    scope: TenantScope,
    conversation_id: uuid.UUID,
    agent_id: uuid.UUID,
    *,
    role: str,
    state: str,
    name: str,
    now: datetime,
    invited_by: uuid.UUID | None = None,
) -> None:
    """Make the agent a participant with ``role`` (a consulted agent who takes over
    keeps their one live row, now as owner)."""
    moved = await conn.fetchval(
        "UPDATE conversation_participants SET role = $4, state = $5, name = $6, joined_at = $7 "
        "WHERE tenant_id = $1 AND conversation_id = $2 AND agent_id = $3 AND state <> 'left' "
        "RETURNING id",
        scope.tenant_id,
        conversation_id,
        agent_id,
        role,
        state,
        name,
        now,
    )
    if moved is None:
        await conn.execute(
            "INSERT INTO conversation_participants (tenant_id, id, conversation_id, kind, role, "
            "state, agent_id, name, invited_by, joined_at) "
            "VALUES ($1, $2, $3, 'agent', $4, $5, $6, $7, $8, $9)",
            scope.tenant_id,
            uuid7(),
            conversation_id,
            role,
            state,
            agent_id,
            name,
            invited_by,
            now,
        )


async def leave(
    conn: asyncpg.Connection,
    scope: TenantScope,
    conversation_id: uuid.UUID,
    now: datetime,
    *,
    roles: Sequence[str],
    who: uuid.UUID | None = None,
) -> list[asyncpg.Record]:
    """Participants of ``roles`` (or only ``who``) leave; returns who left."""
    rows = await conn.fetch(
        "UPDATE conversation_participants SET state = 'left', left_at = $3 "
        "WHERE tenant_id = $1 AND conversation_id = $2 AND state <> 'left' "
        "AND role = ANY($4::text[]) AND ($5::uuid IS NULL OR coalesce(agent_id, user_id) = $5) "
        "RETURNING id, kind, role, agent_id, user_id, name",
        scope.tenant_id,
        conversation_id,
        now,
        list(roles),
        who,
    )
    return list(rows)


async def set_state(
    conn: asyncpg.Connection,
    scope: TenantScope,
    conversation_id: uuid.UUID,
    now: datetime,
    **columns: Any,
) -> None:
    """Update the conversation's columns (names are ours, never a client's)."""
    names = list(columns)
    sets = ", ".join(f"{n} = ${i + 4}" for i, n in enumerate(names))
    await conn.execute(
        f"UPDATE conversations SET {sets}, updated_at = $3, version = version + 1 "  # noqa: S608
        "WHERE tenant_id = $1 AND id = $2",
        scope.tenant_id,
        conversation_id,
        now,
        *[columns[n] for n in names],
    )


async def on_accept(
    conn: asyncpg.Connection,
    scope: TenantScope,
    conv: asyncpg.Record,
    reservation: asyncpg.Record,
    now: datetime,
) -> None:
    """The agent accepted an offer of the conversation's contact (see the module)."""
    contact_id, agent_id = reservation["contact_id"], reservation["agent_id"]
    cid = conv["id"]
    warm = conv["transfer_contact_id"] == contact_id
    if not warm and conv["contact_id"] != contact_id:
        return  # a contact the conversation no longer waits on (it was routed again)
    name = await agent_name(conn, scope, agent_id)
    previous = conv["agent_id"] if warm and conv["agent_id"] != agent_id else None
    await join_as(conn, scope, cid, agent_id, role="owner", state="active", name=name, now=now)
    await set_state(
        conn,
        scope,
        cid,
        now,
        state="assigned",
        agent_id=agent_id,
        contact_id=contact_id,
        queue_id=reservation["queue_id"],
        transfer_contact_id=None,
    )
    await repo.timeline(
        conn,
        scope,
        conv,
        "conversation.transferred" if warm else "conversation.assigned",
        at=now,
        ref_id=contact_id,
        summary={"agent_name": name, "agent_id": str(agent_id)},
    )
    await post_event(
        conn,
        scope,
        cid,
        "conversation.assigned",
        {
            "agent_id": str(agent_id),
            "agent_name": name,
            "contact_id": str(contact_id),
            "queue_id": str(reservation["queue_id"]),
        },
        audience="agents",
    )
    # What the customer sees: a name, never an email address or an id.
    await post_event(conn, scope, cid, "agent.joined", {"name": name, "role": "owner"})
    if not warm:
        return
    from_name = await agent_name(conn, scope, previous) if previous else name
    await post_event(conn, scope, cid, "transfer.completed", {"from": from_name, "to": name})
    if previous is not None:
        await leave(conn, scope, cid, now, roles=("owner",), who=previous)
        await post_event(conn, scope, cid, "agent.left", {"name": from_name, "role": "owner"})
    work = await repo.work_on(conn, scope, conv["contact_id"])
    if work is not None and work["state"] == "in_progress":
        from app.routing.reservations import complete_on

        # Handled minutes end now for the previous owner; their wrap-up follows the
        # queue's timer as for any completed contact.
        await complete_on(conn, scope, work["id"], work["agent_id"])


async def on_complete(
    conn: asyncpg.Connection,
    scope: TenantScope,
    conv: asyncpg.Record,
    reservation: asyncpg.Record,
    now: datetime,
) -> None:
    """The owner ended their work through the routing API (not resolve, pending or a
    transfer, which change the conversation first): it waits for the customer."""
    if (
        conv["state"] == "assigned"
        and conv["contact_id"] == reservation["contact_id"]
        and conv["agent_id"] == reservation["agent_id"]
    ):
        await mark_pending(conn, scope, conv, now)


async def mark_pending(
    conn: asyncpg.Connection, scope: TenantScope, conv: asyncpg.Record, now: datetime
) -> None:
    """Work done for now: the agents leave (monitors stay), the next customer message
    routes the conversation again (``receive`` routes ``pending_customer`` ones)."""
    await set_state(conn, scope, conv["id"], now, state="pending_customer")
    await repo.timeline(conn, scope, conv, "conversation.pending", at=now, ref_id=conv["id"])
    await post_event(conn, scope, conv["id"], "conversation.pending", {})
    await leave(conn, scope, conv["id"], now, roles=("owner", "consult"))
