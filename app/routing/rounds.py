"""One matching round over a batch of due tenants of the shards a worker leases.

All in one transaction: expire what timed out, read the tenants' queues, available
agents and the heads of their lines, run the policy per tenant, write the offers, and
set each tenant's next due time. The database holds the guarantees whatever happens
here: a unique index allows one live reservation per contact, a CHECK keeps an agent's
used points within capacity, and row-level security limits the worker to the shards it
names.

Fairness: due tenants are taken oldest-due first, a bounded batch at a time, and each
tenant gets at most ``max_offers_per_tenant`` offers per round, so one tenant's flood
neither delays nor starves another tenant's routing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from app.db.base import uuid7
from app.routing import snapshots, transitions
from app.routing.policy import DEFAULT_SCORER, Offer, Scorer, WaitingContact, plan_round
from app.routing.transitions import emit, plus, trail

# How many further pages of a blocked line one round may read (each ``per queue`` deep).
EXTRA_PAGES = 4


@dataclass(slots=True)
class RoundResult:
    tenants: int = 0
    offers: int = 0
    moves: int = 0
    timed_out: int = 0
    wrap_ups: int = 0
    offline: int = 0
    more: bool = False  # some tenant is due again at once
    offer_latencies_ms: list[float] = field(default_factory=list)
    offers_by_tenant: dict[uuid.UUID, int] = field(default_factory=dict)


def _dt(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


async def run_round(
    conn: asyncpg.Connection,
    *,
    worker_id: str,
    shards: Sequence[int],
    batch_tenants: int,
    max_offers_per_tenant: int,
    offer_timeout_seconds: float,
    scorer: Scorer = DEFAULT_SCORER,
    only: Sequence[uuid.UUID] | None = None,
) -> RoundResult:
    """One round in one transaction on ``conn`` (the routing workers' role); with
    ``only``, a round of just those tenants (when a batch keeps failing)."""
    result = RoundResult()
    async with conn.transaction():
        held = await conn.fetch(
            "SELECT shard FROM routing_shards "
            "WHERE owner = $1 AND lease_expires_at > now() AND shard = ANY($2::smallint[])",
            worker_id,
            list(shards),
        )
        mine = [r["shard"] for r in held]
        if not mine:
            return result
        await conn.execute(
            "SELECT set_config('app.router_shards', $1, true)", ",".join(map(str, mine))
        )
        now_dt = datetime.now(UTC)
        due = await conn.fetch(
            """
            SELECT tenant_id, shard, seq FROM routing_work
             WHERE shard = ANY($1::smallint[]) AND due_at <= $2
               AND ($4::uuid[] IS NULL OR tenant_id = ANY($4::uuid[]))
             ORDER BY due_at LIMIT $3
            """,
            mine,
            now_dt,
            batch_tenants,
            list(only) if only is not None else None,
        )
        if not due:
            return result
        tenants = [r["tenant_id"] for r in due]
        result.tenants = len(tenants)
        # Timers first: what they release is matchable in this same round.
        expired = await transitions.release_offers(
            conn,
            now=now_dt,
            outcome="timed_out",
            reason="ring-no-answer",
            expired_in_shards=mine,
            tenant_ids=tenants,
            touch=False,
        )
        result.timed_out = len(expired)
        wrapped = await transitions.finish_wrap_ups(
            conn,
            now=now_dt,
            reason="wrap-up-timer",
            expired_in_shards=mine,
            tenant_ids=tenants,
            touch=False,
        )
        result.wrap_ups = len(wrapped)
        gone = await transitions.expire_heartbeats(
            conn, now=now_dt, shards=mine, tenant_ids=tenants
        )
        result.offline = len(gone)

        queues = await snapshots.load_queues(conn, tenants)
        # Lines first (an index probe per queue), then the agents of tenants with someone
        # waiting: a tenant woken by a completion with an empty line reads no agents.
        per_queue = max_offers_per_tenant
        waiting = await snapshots.load_waiting(conn, queues, per_queue)
        agents = await snapshots.load_available_agents(
            conn, [t for t in tenants if waiting.get(t)], mine
        )

        now = now_dt.timestamp()
        offers: list[tuple[uuid.UUID, int, Offer]] = []
        moves: list[tuple[uuid.UUID, int, Any]] = []
        next_due: dict[uuid.UUID, datetime | None] = {}
        shard_of = {r["tenant_id"]: r["shard"] for r in due}
        budget = dict.fromkeys(tenants, max_offers_per_tenant)
        for page in range(1 + EXTRA_PAGES):
            deeper: dict[tuple[uuid.UUID, uuid.UUID], snapshots.Keyset] = {}
            for tenant_id in list(waiting) if page else tenants:
                line = waiting.get(tenant_id, [])
                plan = plan_round(
                    now,
                    queues.get(tenant_id, {}),
                    line,
                    agents.get(tenant_id, []),
                    scorer=scorer,
                    max_offers=budget[tenant_id],
                )
                shard = shard_of[tenant_id]
                budget[tenant_id] -= len(plan.offers)
                offers.extend((tenant_id, shard, o) for o in plan.offers)
                moves.extend((tenant_id, shard, m) for m in plan.moves)
                wake = _dt(plan.next_wake_at) if plan.next_wake_at else None
                if plan.more:
                    next_due[tenant_id] = now_dt
                    result.more = True
                elif page == 0 or wake is not None:
                    earlier = next_due.get(tenant_id)
                    next_due[tenant_id] = min(d for d in (wake, earlier) if d) if wake else earlier
                # A full page of a line that left agents with room: the head may be
                # blocked (skills nobody present has); look further back in that line.
                if budget[tenant_id] > 0 and any(a.free > 0 for a in agents.get(tenant_id, [])):
                    for qid, place in _full_pages(line, per_queue).items():
                        deeper[(tenant_id, qid)] = place
            if not deeper:
                break
            waiting = await snapshots.load_waiting(conn, queues, per_queue, after=deeper)

        if moves:
            await _apply_moves(conn, moves, now_dt)
            result.moves = len(moves)
        # The offers' own time: contacts committed after the round read its clock were
        # read too, and an offer never predates its contact.
        placed = await _apply_offers(conn, offers, datetime.now(UTC), offer_timeout_seconds)
        result.offers = len(placed)
        result.offer_latencies_ms = [lat for _, _, lat in placed]
        for tenant_id, _, _ in placed:
            result.offers_by_tenant[tenant_id] = result.offers_by_tenant.get(tenant_id, 0) + 1

        await _set_next_due(conn, due, next_due, now_dt)
    return result


def _full_pages(line: list[WaitingContact], per_queue: int) -> dict[uuid.UUID, snapshots.Keyset]:
    """Queues whose page of the line was full, with the place of its last contact."""
    count: dict[uuid.UUID, int] = {}
    last: dict[uuid.UUID, WaitingContact] = {}
    for c in line:
        count[c.queue_id] = count.get(c.queue_id, 0) + 1
        if c.queue_id not in last or c.sort_key() > last[c.queue_id].sort_key():
            last[c.queue_id] = c
    return {q: last[q].place for q, n in count.items() if n >= per_queue}


async def _apply_moves(
    conn: asyncpg.Connection, moves: list[tuple[uuid.UUID, int, Any]], now: datetime
) -> None:
    moved = await conn.fetch(
        """
        UPDATE contacts c SET queue_id = v.q, queue_entered_at = $4, version = c.version + 1,
               updated_at = $4
          FROM unnest($1::uuid[], $2::uuid[], $3::uuid[]) AS v(t, c, q)
         WHERE c.tenant_id = v.t AND c.id = v.c AND c.state = 'queued'
        RETURNING c.tenant_id, c.id, c.shard
        """,
        [t for t, _, _ in moves],
        [m.contact_id for _, _, m in moves],
        [m.to_queue_id for _, _, m in moves],
        now,
    )
    done = {(r["tenant_id"], r["id"]) for r in moved}
    await trail(
        conn,
        [
            (
                t,
                s,
                m.contact_id,
                None,
                "overflowed",
                now,
                {
                    "from_queue_id": str(m.from_queue_id),
                    "to_queue_id": str(m.to_queue_id),
                    "waited_seconds": round(m.waited_seconds, 1),
                    "reason": "waited past the queue's max_wait_seconds",
                },
            )
            for t, s, m in moves
            if (t, m.contact_id) in done
        ],
    )


async def _apply_offers(
    conn: asyncpg.Connection,
    offers: list[tuple[uuid.UUID, int, Offer]],
    now: datetime,
    offer_timeout_seconds: float,
) -> list[tuple[uuid.UUID, Offer, float]]:
    """Write the offers that still hold: agent still available with room (lock order:
    presence first), contact still queued. Returns (tenant, offer, enqueue-to-offer ms)."""
    if not offers:
        return []
    per_agent: dict[tuple[uuid.UUID, uuid.UUID], int] = {}
    for t, _, o in offers:
        per_agent[(t, o.agent_id)] = per_agent.get((t, o.agent_id), 0) + o.points
    keys = sorted(per_agent)
    # Lock the presence rows in key order first (an UPDATE ... FROM unnest locks them in
    # whatever order its join runs, which can deadlock with an ordered locker).
    await conn.execute(
        """
        SELECT 1 FROM agent_presence p
          JOIN unnest($1::uuid[], $2::uuid[]) AS v(t, a) ON p.tenant_id = v.t AND p.agent_id = v.a
         ORDER BY p.tenant_id, p.agent_id FOR UPDATE OF p
        """,
        [k[0] for k in keys],
        [k[1] for k in keys],
    )
    took = await conn.fetch(
        """
        UPDATE agent_presence p
           SET used_points = p.used_points + v.points, idle_since = $4, version = p.version + 1
          FROM unnest($1::uuid[], $2::uuid[], $3::int[]) AS v(t, a, points)
         WHERE p.tenant_id = v.t AND p.agent_id = v.a AND p.status = 'available'
           AND p.used_points + v.points <= p.capacity_points
        RETURNING p.tenant_id, p.agent_id
        """,
        [k[0] for k in keys],
        [k[1] for k in keys],
        [per_agent[k] for k in keys],
        now,
    )
    ok_agents = {(r["tenant_id"], r["agent_id"]) for r in took}
    offers = [x for x in offers if (x[0], x[2].agent_id) in ok_agents]
    if not offers:
        return []
    claimed = await conn.fetch(
        """
        UPDATE contacts c
           SET state = 'offered', agent_id = v.a, offered_at = $4, version = c.version + 1,
               updated_at = $4
          FROM unnest($1::uuid[], $2::uuid[], $3::uuid[]) AS v(t, c, a)
         WHERE c.tenant_id = v.t AND c.id = v.c AND c.state = 'queued'
        RETURNING c.tenant_id, c.id, c.enqueued_at, c.channel, c.queue_id, c.priority, c.mode,
                  c.callback_number, c.customer_ref, c.attributes, c.conversation_id
        """,
        [t for t, _, _ in offers],
        [o.contact_id for _, _, o in offers],
        [o.agent_id for _, _, o in offers],
        now,
    )
    by_contact = {(r["tenant_id"], r["id"]): r for r in claimed}
    lost = [(t, o) for t, _, o in offers if (t, o.contact_id) not in by_contact]
    if lost:
        # The customer left (or another worker got there first): give the points back.
        back: dict[tuple[uuid.UUID, uuid.UUID], int] = {}
        for t, o in lost:
            back[(t, o.agent_id)] = back.get((t, o.agent_id), 0) + o.points
        await conn.execute(
            """
            UPDATE agent_presence p SET used_points = p.used_points - v.points
              FROM unnest($1::uuid[], $2::uuid[], $3::int[]) AS v(t, a, points)
             WHERE p.tenant_id = v.t AND p.agent_id = v.a
            """,
            [k[0] for k in back],
            [k[1] for k in back],
            list(back.values()),
        )
    offers = [x for x in offers if (x[0], x[2].contact_id) in by_contact]
    if not offers:
        return []
    expires = plus(now, offer_timeout_seconds)
    ids = [uuid7() for _ in offers]
    await conn.execute(
        """
        INSERT INTO reservations (tenant_id, id, shard, contact_id, agent_id, queue_id, channel,
                                  points, state, offered_at, offer_expires_at, why)
        SELECT t, i, s, c, a, q, ch, pts, 'offered', $10, $11, w::jsonb
          FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::uuid[], $5::uuid[], $6::uuid[],
                      $7::text[], $8::int[], $9::text[]) AS v(t, i, s, c, a, q, ch, pts, w)
        """,
        [t for t, _, _ in offers],
        ids,
        [s for _, s, _ in offers],
        [o.contact_id for _, _, o in offers],
        [o.agent_id for _, _, o in offers],
        [o.queue_id for _, _, o in offers],
        [by_contact[(t, o.contact_id)]["channel"] for t, _, o in offers],
        [o.points for _, _, o in offers],
        [transitions.dumps(o.why) for _, _, o in offers],
        now,
        expires,
    )
    events = []
    trail_rows = []
    placed: list[tuple[uuid.UUID, Offer, float]] = []
    for rid, (t, s, o) in zip(ids, offers, strict=True):
        c = by_contact[(t, o.contact_id)]
        waited = (now - c["enqueued_at"]).total_seconds()
        placed.append((t, o, waited * 1000.0))
        events.append(
            (
                t,
                s,
                o.agent_id,
                "offer.created",
                {
                    "reservation_id": str(rid),
                    "contact_id": str(o.contact_id),
                    "queue_id": str(c["queue_id"]),
                    "channel": c["channel"],
                    "priority": c["priority"],
                    "mode": c["mode"],
                    "callback_number": c["callback_number"],
                    "customer_ref": c["customer_ref"],
                    "conversation_id": c["conversation_id"] and str(c["conversation_id"]),
                    "attributes": snapshots.decode_json(c["attributes"]),
                    "waited_seconds": round(waited, 3),
                    "expires_at": expires.isoformat(),
                    "points": o.points,
                },
            )
        )
        trail_rows.append(
            (t, s, o.contact_id, o.agent_id, "offered", now, {"reservation_id": str(rid), **o.why})
        )
    await emit(conn, events)
    await trail(conn, trail_rows)
    return placed


async def _set_next_due(
    conn: asyncpg.Connection,
    due: Sequence[asyncpg.Record],
    next_due: dict[uuid.UUID, datetime | None],
    now: datetime,
) -> None:
    """Each tenant's next round: the earliest of its timers (offers, wrap-ups, heartbeats)
    and the policy's next change; kept as it is if something touched the tenant since we
    read it (its ``seq`` moved on)."""
    tenants = [r["tenant_id"] for r in due]
    timers = await conn.fetch(
        """
        SELECT tenant_id, min(t) AS t FROM (
          SELECT tenant_id, min(offer_expires_at) AS t FROM reservations
           WHERE tenant_id = ANY($1::uuid[]) AND state = 'offered' GROUP BY tenant_id
          UNION ALL
          SELECT tenant_id, min(wrap_up_expires_at) FROM reservations
           WHERE tenant_id = ANY($1::uuid[]) AND state = 'wrap_up' GROUP BY tenant_id
          UNION ALL
          SELECT tenant_id, min(heartbeat_expires_at) FROM agent_presence
           WHERE tenant_id = ANY($1::uuid[]) AND status <> 'offline' GROUP BY tenant_id
        ) x GROUP BY tenant_id
        """,
        tenants,
    )
    timer = {r["tenant_id"]: r["t"] for r in timers}
    values: list[datetime | None] = []
    for t in tenants:
        candidates = [d for d in (next_due.get(t), timer.get(t)) if d is not None]
        values.append(min(candidates) if candidates else None)
    await conn.execute(
        """
        UPDATE routing_work w SET due_at = v.d
          FROM unnest($1::uuid[], $2::timestamptz[], $3::bigint[]) AS v(t, d, seq)
         WHERE w.tenant_id = v.t AND w.seq = v.seq
        """,
        tenants,
        values,
        [r["seq"] for r in due],
    )
