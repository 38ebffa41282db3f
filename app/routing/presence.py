"""Agent presence: status (offline, available, break with a reason), heartbeats, and the
state an agent is seen in (busy or wrap-up while work holds their points)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Conflict, InvalidInput, NotFound
from app.db.base import utcnow
from app.db.tenant import TenantScope
from app.routing.connection import raw
from app.routing.schemas import PresenceRead, PresenceUpdate, ReservationRead
from app.routing.shards import shard_of
from app.routing.transitions import emit, release_offers, touch_work

LIVE = ("offered", "in_progress", "wrap_up")


def reservation_read(r: asyncpg.Record) -> ReservationRead:
    return ReservationRead(
        id=r["id"],
        contact_id=r["contact_id"],
        agent_id=r["agent_id"],
        queue_id=r["queue_id"],
        channel=r["channel"],
        points=r["points"],
        state=r["state"],
        reason=r["reason"],
        offered_at=r["offered_at"],
        offer_expires_at=r["offer_expires_at"],
        accepted_at=r["accepted_at"],
        wrap_up_at=r["wrap_up_at"],
        wrap_up_expires_at=r["wrap_up_expires_at"],
        closed_at=r["closed_at"],
    )


def derived_state(status: str, live: list[asyncpg.Record]) -> str:
    if status != "available":
        return status
    states = {r["state"] for r in live}
    if "in_progress" in states:
        return "busy"
    if "wrap_up" in states:
        return "wrap_up"
    return "available"


async def _agent(
    conn: asyncpg.Connection, scope: TenantScope, agent_id: uuid.UUID
) -> asyncpg.Record:
    row = await conn.fetchrow(
        """
        SELECT a.id, a.status, a.routing_profile_id, rp.capacity_points
          FROM agents a LEFT JOIN routing_profiles rp
            ON rp.tenant_id = a.tenant_id AND rp.id = a.routing_profile_id
         WHERE a.tenant_id = $1 AND a.id = $2
        """,
        scope.tenant_id,
        agent_id,
    )
    if row is None:
        raise NotFound("No such agent.", code="agent-not-found")
    return row


async def read(conn: asyncpg.Connection, scope: TenantScope, agent_id: uuid.UUID) -> PresenceRead:
    await _agent(conn, scope, agent_id)
    p = await conn.fetchrow(
        "SELECT * FROM agent_presence WHERE tenant_id = $1 AND agent_id = $2",
        scope.tenant_id,
        agent_id,
    )
    live = await conn.fetch(
        "SELECT * FROM reservations WHERE tenant_id = $1 AND agent_id = $2 "
        "AND state = ANY($3::text[]) ORDER BY offered_at",
        scope.tenant_id,
        agent_id,
        list(LIVE),
    )
    if p is None:
        return PresenceRead(
            agent_id=agent_id,
            status="offline",
            state="offline",
            break_reason=None,
            capacity_points=0,
            used_points=0,
            missed_offers=0,
            status_since=utcnow(),
            heartbeat_expires_at=None,
            reservations=[],
        )
    return PresenceRead(
        agent_id=agent_id,
        status=p["status"],
        state=derived_state(p["status"], list(live)),  # type: ignore[arg-type]
        break_reason=p["break_reason"],
        capacity_points=p["capacity_points"],
        used_points=p["used_points"],
        missed_offers=p["missed_offers"],
        status_since=p["status_since"],
        heartbeat_expires_at=p["heartbeat_expires_at"],
        reservations=[reservation_read(r) for r in live],
    )


async def set_status(
    session: AsyncSession,
    scope: TenantScope,
    agent_id: uuid.UUID,
    change: PresenceUpdate,
    *,
    grace_seconds: float,
    now: datetime | None = None,
) -> PresenceRead:
    """Change an agent's status. Going available takes the routing profile's capacity and
    starts the heartbeat clock; break and offline rescind pending offers (work already
    accepted stays with the agent)."""
    conn = await raw(session)
    return await set_status_on(conn, scope, agent_id, change, grace_seconds=grace_seconds, now=now)


async def set_status_on(
    conn: asyncpg.Connection,
    scope: TenantScope,
    agent_id: uuid.UUID,
    change: PresenceUpdate,
    *,
    grace_seconds: float,
    now: datetime | None = None,
) -> PresenceRead:
    now = now or utcnow()
    if change.status == "break" and not change.break_reason:
        raise InvalidInput(
            "body.break_reason: is required with status break", field="body.break_reason"
        )
    if change.status != "break" and change.break_reason is not None:
        raise InvalidInput(
            "body.break_reason: only goes with status break", field="body.break_reason"
        )
    agent = await _agent(conn, scope, agent_id)
    if change.status == "available":
        if agent["status"] != "active":
            raise Conflict(
                f"The agent is {agent['status']}; only an active agent can take work.",
                code="agent-not-active",
            )
        if agent["routing_profile_id"] is None:
            raise Conflict(
                "The agent has no routing profile, so no queues and no capacity.",
                code="no-routing-profile",
            )
    shard = shard_of(scope.tenant_id)
    capacity = agent["capacity_points"] or 0
    expires = now + timedelta(seconds=grace_seconds) if change.status != "offline" else None
    row = await conn.fetchrow(
        """
        INSERT INTO agent_presence AS p (tenant_id, agent_id, shard, status, break_reason,
            capacity_points, used_points, missed_offers, status_since, idle_since,
            heartbeat_expires_at, version)
        VALUES ($1, $2, $3, $4, $5, $6, 0, 0, $7, $7, $8, 1)
        ON CONFLICT (tenant_id, agent_id) DO UPDATE SET
            status = EXCLUDED.status,
            break_reason = EXCLUDED.break_reason,
            capacity_points = GREATEST(EXCLUDED.capacity_points, p.used_points),
            missed_offers = CASE WHEN EXCLUDED.status = 'available' THEN 0
                                 ELSE p.missed_offers END,
            status_since = CASE WHEN p.status = EXCLUDED.status
                                 AND p.break_reason IS NOT DISTINCT FROM EXCLUDED.break_reason
                                THEN p.status_since ELSE EXCLUDED.status_since END,
            idle_since = CASE WHEN p.status <> 'available' AND EXCLUDED.status = 'available'
                              THEN EXCLUDED.idle_since ELSE p.idle_since END,
            heartbeat_expires_at = EXCLUDED.heartbeat_expires_at,
            version = p.version + 1
        RETURNING *
        """,
        scope.tenant_id,
        agent_id,
        shard,
        change.status,
        change.break_reason,
        max(capacity, 1),
        now,
        expires,
    )
    assert row is not None
    if change.status != "available":
        await release_offers(
            conn,
            now=now,
            outcome="rescinded",
            reason="agent-offline" if change.status == "offline" else "agent-on-break",
            agent_ids=[agent_id],
            tenant_ids=[scope.tenant_id],
        )
    payload: dict[str, Any] = {"status": change.status, "break_reason": change.break_reason}
    await emit(conn, [(scope.tenant_id, shard, agent_id, "presence.changed", payload)])
    if change.status == "available":
        await touch_work(conn, scope.tenant_id, shard, now)
    elif expires is not None:
        # Nothing to match, but the router must sign the agent out if heartbeats stop.
        await touch_work(conn, scope.tenant_id, shard, expires)
    return await read(conn, scope, agent_id)


async def heartbeat(
    conn: asyncpg.Connection, scope: TenantScope, agent_id: uuid.UUID, grace_seconds: float
) -> str:
    """Extend the agent's heartbeat deadline; returns their status (offline: log in again)."""
    now = utcnow()
    status = await conn.fetchval(
        """
        UPDATE agent_presence SET heartbeat_expires_at = $3
         WHERE tenant_id = $1 AND agent_id = $2 AND status <> 'offline'
        RETURNING status
        """,
        scope.tenant_id,
        agent_id,
        now + timedelta(seconds=grace_seconds),
    )
    # No wake-up needed: the worker looks at the old deadline, finds it moved, and sets
    # the tenant's next round from the new one.
    return str(status or "offline")
