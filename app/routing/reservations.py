"""Reservations from the agent's side: accept, reject, finish handling, finish wrap-up.

offered -> in_progress (accept) -> wrap_up (complete; the queue's timer) -> completed.
offered -> rejected | timed_out | rescinded: the contact goes back to its place.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Conflict, InvalidInput, NotFound
from app.db.base import utcnow
from app.db.tenant import TenantScope
from app.routing.connection import raw
from app.routing.presence import reservation_read
from app.routing.schemas import ReservationRead
from app.routing.transitions import (
    emit,
    finish_wrap_ups,
    release_offers,
    touch_work,
    trail,
)
from app.usage.service import Meter, record_on


def not_found() -> NotFound:
    return NotFound("No such reservation.", code="reservation-not-found")


async def _get(
    conn: asyncpg.Connection,
    scope: TenantScope,
    reservation_id: uuid.UUID,
    agent_id: uuid.UUID | None,
) -> asyncpg.Record:
    row = await conn.fetchrow(
        "SELECT * FROM reservations WHERE tenant_id = $1 AND id = $2",
        scope.tenant_id,
        reservation_id,
    )
    # Another agent's reservation is not yours to see or act on: 404, like another tenant's.
    if row is None or (agent_id is not None and row["agent_id"] != agent_id):
        raise not_found()
    return row


async def _lock_agent(conn: asyncpg.Connection, scope: TenantScope, agent_id: uuid.UUID) -> None:
    """Lock the agent's presence row first (the lock order everywhere): two requests for
    one reservation (a double click) then run one after the other, and the second sees
    what the first did instead of giving the points back twice."""
    await conn.execute(
        "SELECT 1 FROM agent_presence WHERE tenant_id = $1 AND agent_id = $2 FOR UPDATE",
        scope.tenant_id,
        agent_id,
    )


def _wrong_state(row: asyncpg.Record, action: str, wanted: str) -> Conflict:
    return Conflict(
        f"The reservation is {row['state']}; {action} needs it {wanted}.",
        code="reservation-not-" + wanted.replace("_", "-"),
        state=row["state"],
    )


async def read(
    session: AsyncSession, scope: TenantScope, reservation_id: uuid.UUID, agent_id: uuid.UUID | None
) -> ReservationRead:
    conn = await raw(session)
    return reservation_read(await _get(conn, scope, reservation_id, agent_id))


async def accept(
    conn: asyncpg.Connection, scope: TenantScope, reservation_id: uuid.UUID, agent_id: uuid.UUID
) -> ReservationRead:
    now = utcnow()
    row = await _get(conn, scope, reservation_id, agent_id)
    if row["state"] != "offered":
        raise _wrong_state(row, "accepting", "offered")
    if row["offer_expires_at"] <= now:
        raise Conflict(
            "The offer expired; the contact went back to the queue.", code="offer-expired"
        )
    from app.conversations import hooks

    # Lock order: the conversation (messaging contacts), presence, contact, reservation.
    conv = await hooks.before_accept(conn, scope, row["contact_id"], agent_id)
    await conn.execute(
        "UPDATE agent_presence SET missed_offers = 0, version = version + 1 "
        "WHERE tenant_id = $1 AND agent_id = $2",
        scope.tenant_id,
        agent_id,
    )
    contact = await conn.fetchrow(
        """
        UPDATE contacts SET state = 'in_progress', answered_at = $3,
               wait_seconds = extract(epoch FROM $3 - enqueued_at),
               version = version + 1, updated_at = $3
         WHERE tenant_id = $1 AND id = $2 AND state = 'offered'
        RETURNING shard, wait_seconds
        """,
        scope.tenant_id,
        row["contact_id"],
        now,
    )
    done = await conn.fetchrow(
        "UPDATE reservations SET state = 'in_progress', accepted_at = $3 "
        "WHERE tenant_id = $1 AND id = $2 AND state = 'offered' RETURNING *",
        scope.tenant_id,
        reservation_id,
        now,
    )
    if contact is None or done is None:
        raise Conflict("The offer changed meanwhile (rescinded).", code="reservation-changed")
    await emit(
        conn,
        [
            (
                scope.tenant_id,
                row["shard"],
                agent_id,
                "offer.accepted",
                {"reservation_id": str(reservation_id), "contact_id": str(row["contact_id"])},
            )
        ],
    )
    await trail(
        conn,
        [
            (
                scope.tenant_id,
                row["shard"],
                row["contact_id"],
                agent_id,
                "accepted",
                now,
                {"waited_seconds": round(contact["wait_seconds"], 3)},
            )
        ],
    )
    if conv is not None:
        await hooks.on_accept(conn, scope, conv, done, now)
    return reservation_read(done)


async def reject(
    conn: asyncpg.Connection,
    scope: TenantScope,
    reservation_id: uuid.UUID,
    agent_id: uuid.UUID,
    reason: str | None = None,
) -> ReservationRead:
    await _lock_agent(conn, scope, agent_id)
    row = await _get(conn, scope, reservation_id, agent_id)
    if row["state"] != "offered":
        raise _wrong_state(row, "rejecting", "offered")
    released = await release_offers(
        conn,
        now=utcnow(),
        outcome="rejected",
        reason=reason or "agent-rejected",
        reservation_ids=[reservation_id],
    )
    if not released:
        raise Conflict("The offer changed meanwhile.", code="reservation-changed")
    return reservation_read(await _get(conn, scope, reservation_id, agent_id))


async def complete(
    session: AsyncSession, scope: TenantScope, reservation_id: uuid.UUID, agent_id: uuid.UUID
) -> ReservationRead:
    """Handling is over: wrap-up starts (the queue's timer), or the work completes at once
    when the queue has no wrap-up time. The handled minutes go to the usage ledger."""
    return await complete_on(await raw(session), scope, reservation_id, agent_id)


async def record_handled(
    conn: asyncpg.Connection,
    scope: TenantScope,
    row: asyncpg.Record,
    now: datetime,
    conversation_id: uuid.UUID | None,
) -> None:
    """The reservation's handled minutes on the usage ledger, in this transaction (once:
    keyed by the reservation). On the connection, not the session, so that the routing
    hooks (a warm transfer completes the previous owner inside an accept) record too."""
    meter = Meter(f"handled_minutes.{row['channel']}")
    minutes = Decimal(str(round((now - row["accepted_at"]).total_seconds() / 60.0, 4)))
    attributes = {"contact_id": str(row["contact_id"]), "queue_id": str(row["queue_id"])}
    if conversation_id is not None:
        attributes["conversation_id"] = str(conversation_id)
    await record_on(
        conn,
        scope,
        meter=meter,
        quantity=max(minutes, Decimal(0)),
        occurred_at=now,
        idempotency_key=f"reservation:{row['id']}:handled",
        attributes=attributes,
    )


async def complete_on(
    conn: asyncpg.Connection, scope: TenantScope, reservation_id: uuid.UUID, agent_id: uuid.UUID
) -> ReservationRead:
    """:func:`complete` on a connection (the conversation actions and hooks)."""
    row = await _get(conn, scope, reservation_id, agent_id)
    if row["state"] != "in_progress":
        raise _wrong_state(row, "completing", "in_progress")
    from app.conversations import hooks

    # Lock order: the conversation (messaging contacts) first.
    conv = await hooks.lock_for_contact(conn, scope, row["contact_id"])
    now = utcnow()
    wrap = await conn.fetchval(
        "SELECT wrap_up_seconds FROM queues WHERE tenant_id = $1 AND id = $2",
        scope.tenant_id,
        row["queue_id"],
    )
    await record_handled(conn, scope, row, now, conv["id"] if conv is not None else None)
    if conv is not None:
        await hooks.on_complete(conn, scope, conv, row, now)
    if not wrap:
        # No wrap-up time: straight to completed (each row written once).
        done = await finish_wrap_ups(
            conn,
            now=now,
            reason="no-wrap-up",
            reservation_ids=[reservation_id],
            state="in_progress",
        )
        if not done:
            raise Conflict("The reservation changed meanwhile.", code="reservation-changed")
        return reservation_read(await _get(conn, scope, reservation_id, agent_id))
    # Guarded by state: of two concurrent completes, the second changes nothing.
    moved = await conn.fetchval(
        "UPDATE contacts SET state = 'wrap_up', wrap_up_at = $3, version = version + 1, "
        "updated_at = $3 WHERE tenant_id = $1 AND id = $2 AND state = 'in_progress' "
        "RETURNING id",
        scope.tenant_id,
        row["contact_id"],
        now,
    )
    wrapping = await conn.fetchval(
        "UPDATE reservations SET state = 'wrap_up', wrap_up_at = $3, wrap_up_expires_at = $4 "
        "WHERE tenant_id = $1 AND id = $2 AND state = 'in_progress' RETURNING id",
        scope.tenant_id,
        reservation_id,
        now,
        now + timedelta(seconds=wrap),
    )
    if moved is None or wrapping is None:
        raise Conflict("The reservation changed meanwhile.", code="reservation-changed")
    await emit(
        conn,
        [
            (
                scope.tenant_id,
                row["shard"],
                agent_id,
                "work.wrap_up",
                {
                    "reservation_id": str(reservation_id),
                    "contact_id": str(row["contact_id"]),
                    "wrap_up_seconds": wrap,
                },
            )
        ],
    )
    # The worker must look again when the wrap-up timer runs out.
    await touch_work(conn, scope.tenant_id, row["shard"], now + timedelta(seconds=wrap))
    return reservation_read(await _get(conn, scope, reservation_id, agent_id))


async def wrap_up(
    session: AsyncSession,
    scope: TenantScope,
    reservation_id: uuid.UUID,
    agent_id: uuid.UUID,
    code: str | None,
) -> ReservationRead:
    """The agent is done with after-contact work (optionally with a wrap-up code)."""
    conn = await raw(session)
    await _lock_agent(conn, scope, agent_id)
    row = await _get(conn, scope, reservation_id, agent_id)
    if row["state"] != "wrap_up":
        raise _wrong_state(row, "finishing wrap-up", "wrap_up")
    if code is not None:
        codes = await conn.fetchval(
            "SELECT wrap_up_codes FROM queues WHERE tenant_id = $1 AND id = $2",
            scope.tenant_id,
            row["queue_id"],
        )
        match = [c for c in (codes or []) if c.lower() == code.lower()]
        if not match:
            raise InvalidInput(
                "body.code: not one of the queue's wrap-up codes "
                f"({', '.join(codes or []) or 'none'})",
                field="body.code",
            )
        code = match[0]
    await finish_wrap_ups(
        conn, now=utcnow(), reason="agent-finished", reservation_ids=[reservation_id], code=code
    )
    return reservation_read(await _get(conn, scope, reservation_id, agent_id))
