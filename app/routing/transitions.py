"""State changes of contacts, reservations and presence, as SQL on an asyncpg connection.

Shared by the API (tenant-bound transaction, ``app.tenant_id``) and the routing workers
(shard-bound transaction, ``app.router_shards``): row-level security decides which rows
either one sees, the statements are the same.

Lock order everywhere: agent presence, then contacts, then reservations, and the
tenant's ``routing_work`` row last. Inside a matching round the timers do not touch
``routing_work`` at all (``touch=False``): the round replans those tenants at once and
sets their next due time when it ends. Each change
writes its decision-trail row and its outbox event in the same transaction; outbox
events are announced with NOTIFY ``sb_outbox`` (delivered on commit) and routing work
with NOTIFY ``sb_routing`` (the shard number).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from app.db.base import uuid7

MISSED_OFFERS_BREAK = 3
OUTBOX_CHANNEL = "sb_outbox"
ROUTING_CHANNEL = "sb_routing"


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


async def touch_work(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, shard: int, due_at: datetime
) -> None:
    """Ask for a routing round for the tenant by ``due_at`` and wake the shard's worker."""
    await touch_many(conn, [(tenant_id, shard)], due_at)


async def touch_many(
    conn: asyncpg.Connection, tenants: Sequence[tuple[uuid.UUID, int]], due_at: datetime
) -> None:
    """``touch_work`` for several (tenant, shard) at once: one statement, one NOTIFY per
    shard (rows locked in key order)."""
    if not tenants:
        return
    ordered = sorted(set(tenants))
    await conn.execute(
        """
        WITH up AS (
          INSERT INTO routing_work AS w (tenant_id, shard, due_at, seq)
          SELECT t, s, $3, 1 FROM unnest($1::uuid[], $2::smallint[]) AS v(t, s)
          ON CONFLICT (tenant_id) DO UPDATE
             SET due_at = LEAST(w.due_at, EXCLUDED.due_at), seq = w.seq + 1
          RETURNING shard
        )
        SELECT pg_notify($4, shard::text) FROM (SELECT DISTINCT shard FROM up) s
        """,
        [t for t, _ in ordered],
        [s for _, s in ordered],
        due_at,
        ROUTING_CHANNEL,
    )


async def emit(
    conn: asyncpg.Connection,
    rows: Sequence[tuple[uuid.UUID, int, uuid.UUID | None, str, dict[str, Any]]],
) -> None:
    """Write outbox events (tenant, shard, agent, topic, payload) and announce them."""
    if not rows:
        return
    await conn.execute(
        """
        WITH ins AS (
          INSERT INTO outbox_events (tenant_id, shard, agent_id, topic, payload, created_at)
          SELECT t, s, a, tp, p::jsonb, now()
            FROM unnest($1::uuid[], $2::int[], $3::uuid[], $4::text[], $5::text[])
                 AS v(t, s, a, tp, p)
          RETURNING tenant_id, agent_id, id
        )
        SELECT pg_notify($6, tenant_id::text || ':' || coalesce(agent_id::text, '') || ':' || id)
          FROM ins
        """,
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
        [dumps(r[4]) for r in rows],
        OUTBOX_CHANNEL,
    )


async def trail(
    conn: asyncpg.Connection,
    rows: Sequence[
        tuple[uuid.UUID, int, uuid.UUID, uuid.UUID | None, str, datetime, dict[str, Any]]
    ],
) -> None:
    """Append decision-trail rows (tenant, shard, contact, agent, kind, at, detail)."""
    if not rows:
        return
    await conn.execute(
        """
        INSERT INTO routing_events (tenant_id, id, shard, contact_id, agent_id, kind, at, detail)
        SELECT t, i, s, c, a, k, at, d::jsonb
          FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::uuid[], $5::uuid[], $6::text[],
                      $7::timestamptz[], $8::text[]) AS v(t, i, s, c, a, k, at, d)
        """,
        [r[0] for r in rows],
        [uuid7() for _ in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
        [r[4] for r in rows],
        [r[5] for r in rows],
        [dumps(r[6]) for r in rows],
    )


# ---------------------------------------------------------------------------- release

_DEADLINE = {"offered": "offer_expires_at", "wrap_up": "wrap_up_expires_at"}


async def _select(
    conn: asyncpg.Connection,
    state: str,
    now: datetime,
    *,
    ids: Sequence[uuid.UUID] | None = None,
    agent_ids: Sequence[uuid.UUID] | None = None,
    expired_in_shards: Sequence[int] | None = None,
    tenant_ids: Sequence[uuid.UUID] | None = None,
) -> list[asyncpg.Record]:
    """Reservations in ``state`` picked by id, by agent, or whose deadline passed in the
    given shards; ordered by (tenant, agent), the order their presence rows are locked."""
    where = [f"r.state = '{state}'", "$1::timestamptz IS NOT NULL"]
    args: list[Any] = [now]
    for column, values, cast in (
        ("r.id", ids, "uuid"),
        ("r.agent_id", agent_ids, "uuid"),
        ("r.shard", expired_in_shards, "smallint"),
        ("r.tenant_id", tenant_ids, "uuid"),
    ):
        if values is not None:
            args.append(list(values))
            where.append(f"{column} = ANY(${len(args)}::{cast}[])")
    if expired_in_shards is not None:
        where.append(f"r.{_DEADLINE[state]} <= $1")
    # Lock the agents' presence rows first (the lock order), then read the reservations
    # again: a concurrent accept, reject or wrap-up that got there first has committed
    # by then, and its reservation is no longer in ``state`` (no double release).
    locked = await conn.fetchval(
        f"""
        WITH agents AS (
          SELECT DISTINCT r.tenant_id, r.agent_id FROM reservations r
           WHERE {" AND ".join(where)}
        ), locked AS (
          SELECT 1 FROM agent_presence p JOIN agents a USING (tenant_id, agent_id)
           ORDER BY p.tenant_id, p.agent_id FOR UPDATE OF p
        )
        SELECT count(*) FROM locked
        """,  # noqa: S608 - the conditions are built above from constants
        *args,
    )
    if not locked:
        return []
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT r.tenant_id, r.id, r.shard, r.contact_id, r.agent_id, r.points "  # noqa: S608
        f"FROM reservations r WHERE {' AND '.join(where)} ORDER BY r.tenant_id, r.agent_id",
        *args,
    )
    return rows


async def release_offers(
    conn: asyncpg.Connection,
    *,
    now: datetime,
    outcome: str,
    reason: str,
    reservation_ids: Sequence[uuid.UUID] | None = None,
    expired_in_shards: Sequence[int] | None = None,
    tenant_ids: Sequence[uuid.UUID] | None = None,
    agent_ids: Sequence[uuid.UUID] | None = None,
    touch: bool = True,
) -> list[asyncpg.Record]:
    """End live offers as ``rejected``, ``timed_out`` or ``rescinded``: each contact goes
    back to its original place in line, the agent's points come back, and the agent is
    told. A time-out counts a missed offer; the third in a row puts the agent on break
    (``missed-offers``) and rescinds their other offers.

    Select the offers by id, by agent, or (router) those expired in the given shards.
    """
    assert outcome in ("rejected", "timed_out", "rescinded")
    offers = await _select(
        conn,
        "offered",
        now,
        ids=reservation_ids,
        agent_ids=agent_ids,
        expired_in_shards=expired_in_shards,
        tenant_ids=tenant_ids,
    )
    if not offers:
        return []
    missed = 1 if outcome == "timed_out" else 0
    # Presence first (lock order): points back, and each timed-out offer is one miss.
    per_agent: dict[tuple[uuid.UUID, uuid.UUID], list[int]] = {}
    for o in offers:
        sums = per_agent.setdefault((o["tenant_id"], o["agent_id"]), [0, 0])
        sums[0] += o["points"]
        sums[1] += missed
    broke = await conn.fetch(
        """
        UPDATE agent_presence p
           SET used_points = p.used_points - v.points,
               missed_offers = p.missed_offers + v.missed,
               status = CASE WHEN v.missed > 0 AND p.missed_offers + v.missed >= $4
                              AND p.status = 'available'
                             THEN 'break' ELSE p.status END,
               break_reason = CASE WHEN v.missed > 0 AND p.missed_offers + v.missed >= $4
                                    AND p.status = 'available'
                                   THEN 'missed-offers' ELSE p.break_reason END,
               status_since = CASE WHEN v.missed > 0 AND p.missed_offers + v.missed >= $4
                                    AND p.status = 'available'
                                   THEN $5 ELSE p.status_since END,
               version = p.version + 1
          FROM unnest($1::uuid[], $2::uuid[], $3::int[], $6::int[]) AS v(t, a, points, missed)
         WHERE p.tenant_id = v.t AND p.agent_id = v.a
        RETURNING p.tenant_id, p.agent_id, p.shard,
                  (p.status = 'break' AND p.break_reason = 'missed-offers'
                   AND p.status_since = $5 AND v.missed > 0) AS went_on_break
        """,
        [k[0] for k in per_agent],
        [k[1] for k in per_agent],
        [v[0] for v in per_agent.values()],
        MISSED_OFFERS_BREAK,
        now,
        [v[1] for v in per_agent.values()],
    )
    # A decline or a time-out keeps that agent from being offered the contact again at
    # once; a rescind (agent gone, contact left) does not.
    declined = outcome in ("rejected", "timed_out")
    await conn.execute(
        """
        UPDATE contacts c
           SET state = 'queued', agent_id = NULL,
               declined_by = CASE WHEN $6 THEN v.a ELSE c.declined_by END,
               declined_at = CASE WHEN $6 THEN $4 ELSE c.declined_at END,
               missed_offers = c.missed_offers + $5, version = c.version + 1, updated_at = $4
          FROM unnest($1::uuid[], $2::uuid[], $3::uuid[]) AS v(t, c, a)
         WHERE c.tenant_id = v.t AND c.id = v.c AND c.state = 'offered'
        """,
        [o["tenant_id"] for o in offers],
        [o["contact_id"] for o in offers],
        [o["agent_id"] for o in offers],
        now,
        missed,
        declined,
    )
    await conn.execute(
        """
        UPDATE reservations r SET state = $3, reason = $4, closed_at = $5
          FROM unnest($1::uuid[], $2::uuid[]) AS v(t, i)
         WHERE r.tenant_id = v.t AND r.id = v.i AND r.state = 'offered'
        """,
        [o["tenant_id"] for o in offers],
        [o["id"] for o in offers],
        outcome,
        reason,
        now,
    )
    topic = {"rejected": "offer.rejected", "timed_out": "offer.timed_out"}.get(
        outcome, "offer.rescinded"
    )
    events: list[tuple[uuid.UUID, int, uuid.UUID | None, str, dict[str, Any]]] = [
        (
            o["tenant_id"],
            o["shard"],
            o["agent_id"],
            topic,
            {"reservation_id": str(o["id"]), "contact_id": str(o["contact_id"]), "reason": reason},
        )
        for o in offers
    ]
    trail_rows = [
        (
            o["tenant_id"],
            o["shard"],
            o["contact_id"],
            o["agent_id"],
            outcome,
            now,
            {"reason": reason},
        )
        for o in offers
    ]
    on_break = [b for b in broke if b["went_on_break"]]
    for b in on_break:
        events.append(
            (
                b["tenant_id"],
                b["shard"],
                b["agent_id"],
                "presence.changed",
                {"status": "break", "break_reason": "missed-offers"},
            )
        )
    await emit(conn, events)
    await trail(conn, trail_rows)
    if on_break:
        # On break now: their other live offers go back too.
        await release_offers(
            conn,
            now=now,
            outcome="rescinded",
            reason="agent-on-break",
            agent_ids=[b["agent_id"] for b in on_break],
            tenant_ids=list({b["tenant_id"] for b in on_break}),
            touch=touch,
        )
    if touch:
        await _touch_all(conn, offers, now)
    return list(offers)


async def _touch_all(
    conn: asyncpg.Connection, rows: Sequence[asyncpg.Record], now: datetime
) -> None:
    await touch_many(conn, [(r["tenant_id"], r["shard"]) for r in rows], now)


async def finish_wrap_ups(
    conn: asyncpg.Connection,
    *,
    now: datetime,
    reason: str,
    reservation_ids: Sequence[uuid.UUID] | None = None,
    code: str | None = None,
    expired_in_shards: Sequence[int] | None = None,
    tenant_ids: Sequence[uuid.UUID] | None = None,
    touch: bool = True,
    state: str = "wrap_up",
) -> list[asyncpg.Record]:
    """Complete work in wrap-up (the agent is done, or the queue's timer ran out): the
    contact is completed and the agent's points come back. ``state="in_progress"``
    completes handled work of a queue without wrap-up time directly (each row written
    once)."""
    assert state in ("wrap_up", "in_progress")
    rows = await _select(
        conn,
        state,
        now,
        ids=reservation_ids,
        expired_in_shards=expired_in_shards,
        tenant_ids=tenant_ids,
    )
    if not rows:
        return []
    await _free_points(conn, rows, now)
    await conn.execute(
        """
        UPDATE contacts c
           SET state = 'completed', completed_at = $3, wrap_up_code = coalesce($4, c.wrap_up_code),
               version = c.version + 1, updated_at = $3
          FROM unnest($1::uuid[], $2::uuid[]) AS v(t, c)
         WHERE c.tenant_id = v.t AND c.id = v.c AND c.state = $5
        """,
        [r["tenant_id"] for r in rows],
        [r["contact_id"] for r in rows],
        now,
        code,
        state,
    )
    await _close(conn, rows, "completed", reason, now)
    await emit(
        conn,
        [
            (
                r["tenant_id"],
                r["shard"],
                r["agent_id"],
                "work.completed",
                {
                    "reservation_id": str(r["id"]),
                    "contact_id": str(r["contact_id"]),
                    "reason": reason,
                },
            )
            for r in rows
        ],
    )
    await trail(
        conn,
        [
            (
                r["tenant_id"],
                r["shard"],
                r["contact_id"],
                r["agent_id"],
                "completed",
                now,
                {"reason": reason, "wrap_up_code": code},
            )
            for r in rows
        ],
    )
    if touch:
        await _touch_all(conn, rows, now)
    return list(rows)


async def _free_points(
    conn: asyncpg.Connection, rows: Sequence[asyncpg.Record], now: datetime
) -> None:
    per_agent: dict[tuple[uuid.UUID, uuid.UUID], int] = {}
    for r in rows:
        key = (r["tenant_id"], r["agent_id"])
        per_agent[key] = per_agent.get(key, 0) + r["points"]
    await conn.execute(
        """
        UPDATE agent_presence p
           SET used_points = p.used_points - v.points, idle_since = $4, version = p.version + 1
          FROM unnest($1::uuid[], $2::uuid[], $3::int[]) AS v(t, a, points)
         WHERE p.tenant_id = v.t AND p.agent_id = v.a
        """,
        [k[0] for k in per_agent],
        [k[1] for k in per_agent],
        list(per_agent.values()),
        now,
    )


async def _close(
    conn: asyncpg.Connection, rows: Sequence[asyncpg.Record], state: str, reason: str, now: datetime
) -> None:
    await conn.execute(
        """
        UPDATE reservations r SET state = $3, reason = $4, closed_at = $5
          FROM unnest($1::uuid[], $2::uuid[]) AS v(t, i)
         WHERE r.tenant_id = v.t AND r.id = v.i
        """,
        [r["tenant_id"] for r in rows],
        [r["id"] for r in rows],
        state,
        reason,
        now,
    )


async def expire_heartbeats(
    conn: asyncpg.Connection,
    *,
    now: datetime,
    shards: Sequence[int],
    tenant_ids: Sequence[uuid.UUID],
) -> list[asyncpg.Record]:
    """Agents whose heartbeats stopped past the grace period go offline; their pending
    offers are rescinded and the contacts put back (not counted as missed)."""
    gone = await conn.fetch(
        """
        UPDATE agent_presence p
           SET status = 'offline', break_reason = NULL, status_since = $1,
               heartbeat_expires_at = NULL, version = p.version + 1
         WHERE p.shard = ANY($2::smallint[]) AND p.tenant_id = ANY($3::uuid[])
           AND p.status <> 'offline' AND p.heartbeat_expires_at <= $1
        RETURNING p.tenant_id, p.agent_id, p.shard
        """,
        now,
        list(shards),
        list(tenant_ids),
    )
    if gone:
        await emit(
            conn,
            [
                (
                    g["tenant_id"],
                    g["shard"],
                    g["agent_id"],
                    "presence.changed",
                    {"status": "offline", "reason": "heartbeat-lost"},
                )
                for g in gone
            ],
        )
        await release_offers(
            conn,
            now=now,
            outcome="rescinded",
            reason="agent-offline",
            agent_ids=[g["agent_id"] for g in gone],
            tenant_ids=list({g["tenant_id"] for g in gone}),
            touch=False,  # only the routing workers call this, inside a round
        )
    return list(gone)


def plus(now: datetime, seconds: float) -> datetime:
    return now + timedelta(seconds=seconds)
