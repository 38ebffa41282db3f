"""Contacts: enqueue (directly or through a contact flow), read with position and
estimated wait, abandon, and turn into a callback that keeps its place.

Every channel creates its contacts through :func:`enqueue`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Conflict, InvalidInput, NotFound
from app.db.base import utcnow, uuid7
from app.db.tenant import TenantScope
from app.quotas.service import ensure_room, register_counter
from app.routing.connection import raw
from app.routing.schemas import ContactCreate, ContactRead
from app.routing.shards import shard_of
from app.routing.snapshots import decode_json
from app.routing.transitions import dumps, emit, release_offers, touch_work, trail

ACTIVE_STATES = ("queued", "offered", "in_progress", "wrap_up")
DEFAULT_HANDLE_SECONDS = 180.0
_QUEUE = (
    "SELECT id, channels, max_waiting, overflow_queue_id, sticky_timeout_seconds "
    "FROM queues WHERE tenant_id = $1 AND id = $2"
)


async def _count_active(session: AsyncSession, scope: TenantScope) -> int:
    conn = await raw(session)
    n = await conn.fetchval(
        "SELECT count(*) FROM contacts WHERE tenant_id = $1 AND state = ANY($2::text[])",
        scope.tenant_id,
        list(ACTIVE_STATES),
    )
    return int(n or 0)


register_counter("concurrent_contacts", _count_active)


def not_found() -> NotFound:
    return NotFound("No such contact.", code="contact-not-found")


async def _resolve_flow(
    session: AsyncSession, scope: TenantScope, data: ContactCreate
) -> dict[str, Any]:
    """Run the published flow with the given answers up to its queue (or refuse)."""
    from app.flows import interpreter as fi
    from app.flows import repository as flows_repo
    from app.flows.service import published_graph

    assert data.flow_id is not None
    flow = await flows_repo.get(session, scope, data.flow_id)
    if flow is None:
        raise InvalidInput(
            "body.flow_id: no such flow in this tenant",
            code="unknown-reference",
            field="body.flow_id",
        )
    if flow.published_version is None:
        raise InvalidInput(
            "body.flow_id: the flow has never been published",
            code="flow-not-published",
            field="body.flow_id",
        )
    if flow.channel not in ("any", data.channel):
        raise InvalidInput(
            f"body.channel: the flow is for {flow.channel} contacts, not {data.channel}",
            code="channel-not-taken",
            field="body.channel",
        )
    number, graph = await published_graph(session, scope, data.flow_id)
    attrs = {k: v for k, v in data.attributes.items() if isinstance(v, str | int | float)}
    try:
        run, actions = await _run_flow(session, scope, data, graph, number, attrs)
    except fi.FlowError as exc:
        raise InvalidInput(
            f"body.flow_id: the flow failed ({exc})", code="flow-failed", field="body.flow_id"
        ) from None
    # A callback the customer accepted may be followed by goodbyes: the queueing action
    # decides, wherever it is.
    last = next((a for a in reversed(actions) if isinstance(a, fi.Queue | fi.Callback)), None)
    if isinstance(last, fi.Queue):
        return {
            "queue_id": last.queue_id,
            "priority": last.priority,
            "skills": [
                {"skill_id": str(s.skill_id), "min_proficiency": s.min_proficiency}
                for s in last.extra_skills
            ],
            "flow_answers": dict(run.attributes),
            "mode": "live",
        }
    if isinstance(last, fi.Callback):
        return {
            "queue_id": last.queue_id,
            "priority": data.priority,
            "skills": [],
            "flow_answers": dict(run.attributes),
            "mode": "callback",
        }
    end = actions[-1] if actions else None
    outcome = end.as_dict() if end is not None else {"kind": "nothing"}
    raise InvalidInput(
        f"body.flow_id: the flow ended without queueing the contact ({outcome.get('kind')})",
        code="flow-did-not-queue",
        field="body.flow_id",
        outcome=outcome,
    )


async def _run_flow(
    session: AsyncSession,
    scope: TenantScope,
    data: ContactCreate,
    graph: Any,
    number: int,
    attrs: dict[str, Any],
) -> tuple[Any, list[Any]]:
    """Run the flow, feeding the caller's answers, until it ends (or waits in vain)."""
    from app.business_hours import repository as hours_repo
    from app.business_hours.service import status_of
    from app.flows import interpreter as fi

    run = fi.start(graph, attrs, flow_id=data.flow_id, version=number)
    actions = list(run.first_actions)
    answers = list(data.flow_inputs)
    for _ in range(100):
        if run.finished:
            break
        wants = run.waiting_for
        if wants == "hours":
            need = next(a for a in reversed(actions) if isinstance(a, fi.NeedHours))
            hours = await hours_repo.get(session, scope, need.business_hours_id)
            is_open = hours is not None and status_of(hours, utcnow()).open
            actions += run.feed(fi.hours(is_open))
        elif wants == "input":
            if not answers:
                raise InvalidInput(
                    "body.flow_inputs: the flow waits for another answer",
                    code="flow-needs-input",
                    field="body.flow_inputs",
                )
            answer = answers.pop(0)
            event = fi.dtmf(answer) if data.channel == "voice" else fi.text(answer)
            actions += run.feed(event)
        else:
            answer = answers.pop(0) if answers else "no"
            actions += run.feed(fi.callback_answer(answer.lower() in ("yes", "1", "y")))
    return run, actions


async def enqueue(
    session: AsyncSession,
    scope: TenantScope,
    plan: str,
    data: ContactCreate,
    *,
    conversation_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """Put a contact in line; the shard's routing worker is woken on commit.
    ``conversation_id``: the conversation it routes (messaging channels)."""
    if (data.queue_id is None) == (data.flow_id is None):
        raise InvalidInput("body.queue_id: give either queue_id or flow_id", field="body.queue_id")
    conn = await raw(session)
    priority = data.priority
    skills = [
        {"skill_id": str(s.skill_id), "min_proficiency": s.min_proficiency}
        for s in data.required_skills
    ]
    attributes = dict(data.attributes)
    mode = "live"
    if data.flow_id is not None:
        routed = await _resolve_flow(session, scope, data)
        queue_id = routed["queue_id"]
        priority = routed["priority"] if "priority" not in data.model_fields_set else priority
        skills = routed["skills"] + skills
        attributes["flow_answers"] = routed["flow_answers"]
        mode = routed["mode"]
    else:
        assert data.queue_id is not None
        queue_id = data.queue_id
    queue = await conn.fetchrow(_QUEUE, scope.tenant_id, queue_id)
    field = "body.queue_id" if data.flow_id is None else "body.flow_id"
    if queue is None:
        raise InvalidInput(
            f"{field}: no such queue in this tenant", code="unknown-reference", field=field
        )
    if data.channel not in queue["channels"]:
        raise InvalidInput(
            f"body.channel: the queue takes {', '.join(queue['channels'])}, not {data.channel}",
            code="channel-not-taken",
            field="body.channel",
        )
    await _check_references(conn, scope, data)
    await ensure_room(session, scope, plan, "concurrent_contacts")
    queue = await _room_in_line(conn, scope, queue, data.channel)

    sticky = None
    if data.customer_ref and queue["sticky_timeout_seconds"] > 0:
        sticky = await conn.fetchval(
            """
            SELECT agent_id FROM contacts
             WHERE tenant_id = $1 AND customer_ref = $2 AND agent_id IS NOT NULL
               AND answered_at IS NOT NULL
             ORDER BY answered_at DESC LIMIT 1
            """,
            scope.tenant_id,
            data.customer_ref,
        )
    now = utcnow()
    cid = uuid7()
    shard = shard_of(scope.tenant_id)
    await conn.execute(
        """
        INSERT INTO contacts (tenant_id, id, shard, channel, queue_id, original_queue_id,
            customer_ref, priority, state, mode, extra_skills, attributes,
            preferred_agent_ids, sticky_agent_id, enqueued_at, queue_entered_at,
            missed_offers, version, created_at, updated_at, conversation_id)
        VALUES ($1, $2, $3, $4, $5, $5, $6, $7, 'queued', $8, $9::jsonb, $10::jsonb,
                $11::uuid[], $12, $13, $13, 0, 1, $13, $13, $14)
        """,
        scope.tenant_id,
        cid,
        shard,
        data.channel,
        queue["id"],
        data.customer_ref,
        priority,
        mode,
        dumps(skills),
        dumps(attributes),
        list(data.preferred_agent_ids),
        sticky,
        now,
        conversation_id,
    )
    detail: dict[str, Any] = {"queue_id": str(queue["id"]), "priority": priority}
    if conversation_id is not None:
        detail["conversation_id"] = str(conversation_id)
    if queue["id"] != queue_id:
        detail["redirected_from"] = str(queue_id)
        detail["reason"] = "queue full (max_waiting): its overflow queue took the contact"
    if data.flow_id is not None:
        detail["flow_id"] = str(data.flow_id)
    if sticky is not None:
        detail["sticky_agent_id"] = str(sticky)
    await trail(conn, [(scope.tenant_id, shard, cid, None, "enqueued", now, detail)])
    await touch_work(conn, scope.tenant_id, shard, now)
    return cid


async def _check_references(
    conn: asyncpg.Connection, scope: TenantScope, data: ContactCreate
) -> None:
    if data.required_skills:
        ids = [s.skill_id for s in data.required_skills]
        found = await conn.fetch(
            "SELECT id FROM skills WHERE tenant_id = $1 AND id = ANY($2::uuid[])",
            scope.tenant_id,
            ids,
        )
        have = {r["id"] for r in found}
        for i, sid in enumerate(ids):
            if sid not in have:
                f = f"body.required_skills.{i}.skill_id"
                raise InvalidInput(
                    f"{f}: no such skill in this tenant", code="unknown-reference", field=f
                )
    if data.preferred_agent_ids:
        found = await conn.fetch(
            "SELECT id FROM agents WHERE tenant_id = $1 AND id = ANY($2::uuid[])",
            scope.tenant_id,
            list(data.preferred_agent_ids),
        )
        have = {r["id"] for r in found}
        for i, aid in enumerate(data.preferred_agent_ids):
            if aid not in have:
                f = f"body.preferred_agent_ids.{i}"
                raise InvalidInput(
                    f"{f}: no such agent in this tenant", code="unknown-reference", field=f
                )


async def _room_in_line(
    conn: asyncpg.Connection, scope: TenantScope, queue: asyncpg.Record, channel: str
) -> asyncpg.Record:
    """The queue itself, or its overflow queue when it is full (max_waiting) and takes
    the contact's channel."""
    seen: set[uuid.UUID] = set()
    full = queue
    while queue["max_waiting"] is not None:
        seen.add(queue["id"])
        # Serialise enqueues into this queue, so two cannot both take the last place.
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 42))", str(queue["id"])
        )
        waiting = await conn.fetchval(
            "SELECT count(*) FROM contacts "
            "WHERE tenant_id = $1 AND queue_id = $2 AND state = 'queued'",
            scope.tenant_id,
            queue["id"],
        )
        if waiting < queue["max_waiting"]:
            break
        nxt = queue["overflow_queue_id"]
        if nxt is not None and nxt not in seen:
            queue = await conn.fetchrow(_QUEUE, scope.tenant_id, nxt)
        if nxt is None or nxt in seen or queue is None or channel not in queue["channels"]:
            raise Conflict(
                f"The queue is full ({full['max_waiting']} waiting).",
                code="queue-full",
                max_waiting=full["max_waiting"],
            )
    return queue


# ---------------------------------------------------------------------------- reading


_ROW = "SELECT * FROM contacts WHERE tenant_id = $1 AND id = $2"


async def get_row(
    conn: asyncpg.Connection, scope: TenantScope, contact_id: uuid.UUID, lock: bool = False
) -> asyncpg.Record:
    row = await conn.fetchrow(_ROW + (" FOR UPDATE" if lock else ""), scope.tenant_id, contact_id)
    if row is None:
        raise not_found()
    return row


async def position_and_wait(
    conn: asyncpg.Connection, scope: TenantScope, row: asyncpg.Record
) -> tuple[int | None, float | None]:
    """Place in line (1 = next) and an estimate of the wait left.

    Estimate: contacts ahead + 1, times the queue's recent average handle time, over the
    agents who serve the queue and are logged in (available or busy); with no handled
    contact in the last hour, three minutes stand in. None when nobody serves the queue.
    """
    if row["state"] != "queued":
        return None, None
    ahead = await conn.fetchval(
        """
        SELECT count(*) FROM contacts
         WHERE tenant_id = $1 AND queue_id = $2 AND state = 'queued'
           AND (priority, enqueued_at) < ($3, $4)
        """,
        scope.tenant_id,
        row["queue_id"],
        row["priority"],
        row["enqueued_at"],
    )
    stats = await conn.fetchrow(
        """
        SELECT avg(extract(epoch FROM coalesce(r.wrap_up_at, r.closed_at) - r.accepted_at))
                 AS aht,
               count(*) AS n
          FROM reservations r
         WHERE r.tenant_id = $1 AND r.queue_id = $2 AND r.accepted_at IS NOT NULL
           AND r.closed_at > now() - interval '1 hour'
        """,
        scope.tenant_id,
        row["queue_id"],
    )
    staffed = await conn.fetchval(
        """
        SELECT count(*) FROM agent_presence p
          JOIN agents a ON a.tenant_id = p.tenant_id AND a.id = p.agent_id
          JOIN routing_profile_queues q
            ON q.tenant_id = a.tenant_id AND q.routing_profile_id = a.routing_profile_id
         WHERE p.tenant_id = $1 AND q.queue_id = $2 AND p.status = 'available'
        """,
        scope.tenant_id,
        row["queue_id"],
    )
    position = int(ahead) + 1
    if not staffed:
        return position, None
    aht = float(stats["aht"]) if stats and stats["aht"] is not None else DEFAULT_HANDLE_SECONDS
    return position, round(position * aht / staffed, 1)


def to_read(row: asyncpg.Record, position: int | None, ewt: float | None) -> ContactRead:
    return ContactRead(
        id=row["id"],
        channel=row["channel"],
        queue_id=row["queue_id"],
        original_queue_id=row["original_queue_id"],
        customer_ref=row["customer_ref"],
        priority=row["priority"],
        state=row["state"],
        mode=row["mode"],
        callback_number=row["callback_number"],
        required_skills=decode_json(row["extra_skills"]),
        preferred_agent_ids=list(row["preferred_agent_ids"] or []),
        attributes=decode_json(row["attributes"]),
        sticky_agent_id=row["sticky_agent_id"],
        agent_id=row["agent_id"],
        enqueued_at=row["enqueued_at"],
        offered_at=row["offered_at"],
        answered_at=row["answered_at"],
        completed_at=row["completed_at"],
        abandoned_at=row["abandoned_at"],
        wait_seconds=row["wait_seconds"],
        missed_offers=row["missed_offers"],
        wrap_up_code=row["wrap_up_code"],
        position=position,
        estimated_wait_seconds=ewt,
    )


async def read(session: AsyncSession, scope: TenantScope, contact_id: uuid.UUID) -> ContactRead:
    conn = await raw(session)
    row = await get_row(conn, scope, contact_id)
    position, ewt = await position_and_wait(conn, scope, row)
    return to_read(row, position, ewt)


# ---------------------------------------------------------------------------- changes


async def abandon(session: AsyncSession, scope: TenantScope, contact_id: uuid.UUID) -> ContactRead:
    """The customer left: the contact leaves the line (an offer is rescinded); the time
    waited stays for the metrics."""
    conn = await raw(session)
    now = utcnow()
    # A routing worker may offer the contact between our read and our write: look again.
    for _ in range(3):
        row = await get_row(conn, scope, contact_id)
        if row["state"] not in ("queued", "offered"):
            raise Conflict(
                f"The contact is {row['state']}; only a waiting contact can be abandoned.",
                code="contact-not-waiting",
                state=row["state"],
            )
        if row["state"] == "offered":
            offers = await conn.fetch(
                "SELECT id FROM reservations WHERE tenant_id = $1 AND contact_id = $2 "
                "AND state = 'offered'",
                scope.tenant_id,
                contact_id,
            )
            await release_offers(
                conn,
                now=now,
                outcome="rescinded",
                reason="contact-abandoned",
                reservation_ids=[r["id"] for r in offers],
            )
        done = await conn.fetchrow(
            """
            UPDATE contacts SET state = 'abandoned', abandoned_at = $3, agent_id = NULL,
                   wait_seconds = extract(epoch FROM $3 - enqueued_at),
                   version = version + 1, updated_at = $3
             WHERE tenant_id = $1 AND id = $2 AND state = 'queued'
            RETURNING *
            """,
            scope.tenant_id,
            contact_id,
            now,
        )
        if done is not None:
            break
    else:
        raise Conflict("The contact changed meanwhile; try again.", code="contact-changed")
    await trail(
        conn,
        [
            (
                scope.tenant_id,
                done["shard"],
                contact_id,
                None,
                "abandoned",
                now,
                {"waited_seconds": round(done["wait_seconds"], 3)},
            )
        ],
    )
    await emit(
        conn,
        [
            (
                scope.tenant_id,
                done["shard"],
                None,
                "contact.abandoned",
                {"contact_id": str(contact_id)},
            )
        ],
    )
    return to_read(done, None, None)


async def make_callback(
    session: AsyncSession, scope: TenantScope, contact_id: uuid.UUID, number: str
) -> ContactRead:
    """Virtual hold: the customer hangs up and is called back when their turn comes;
    the contact keeps its place in line. ``number`` is a checked E.164 number
    (``CallbackRequest``)."""
    conn = await raw(session)
    now = utcnow()
    row = await get_row(conn, scope, contact_id)
    if row["state"] != "queued":
        raise Conflict(
            f"The contact is {row['state']}; only a queued contact can become a callback.",
            code="contact-not-waiting",
            state=row["state"],
        )
    done = await conn.fetchrow(
        """
        UPDATE contacts SET mode = 'callback', callback_number = $3, version = version + 1,
               updated_at = $4
         WHERE tenant_id = $1 AND id = $2 AND state = 'queued'
        RETURNING *
        """,
        scope.tenant_id,
        contact_id,
        number,
        now,
    )
    if done is None:
        raise Conflict("The contact changed meanwhile; try again.", code="contact-changed")
    await trail(
        conn,
        [
            (
                scope.tenant_id,
                done["shard"],
                contact_id,
                None,
                "callback",
                now,
                {"keeps_place": True},
            )
        ],
    )
    position, ewt = await position_and_wait(conn, scope, done)
    return to_read(done, position, ewt)


def when(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
