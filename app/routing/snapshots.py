"""Read the policy's inputs (queues, available agents, waiting contacts) for tenants.

One query per kind for many tenants at once: the routing workers read a whole batch of
tenants this way; the API reads one tenant for explanations. Row-level security limits
what either one sees.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from app.routing.policy import AgentSnapshot, QueuePolicy, Step, WaitingContact


def ts(value: datetime) -> float:
    return value.timestamp()


def decode_json(value: Any) -> Any:
    """A jsonb column's value, whether the connection decoded it already or not."""
    return json.loads(value) if isinstance(value, str) else value


async def load_queues(
    conn: asyncpg.Connection, tenant_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, dict[uuid.UUID, QueuePolicy]]:
    rows = await conn.fetch(
        """
        SELECT q.tenant_id, q.id, q.name, q.agent_selection, q.sticky_timeout_seconds,
               q.wrap_up_seconds, q.overflow_queue_id, q.max_wait_seconds, q.relaxation_steps,
               coalesce((SELECT jsonb_object_agg(s.skill_id::text, s.min_proficiency)
                           FROM queue_skills s
                          WHERE s.tenant_id = q.tenant_id AND s.queue_id = q.id), '{}') AS skills
          FROM queues q
         WHERE q.tenant_id = ANY($1::uuid[])
        """,
        list(tenant_ids),
    )
    out: dict[uuid.UUID, dict[uuid.UUID, QueuePolicy]] = defaultdict(dict)
    for r in rows:
        out[r["tenant_id"]][r["id"]] = QueuePolicy(
            id=r["id"],
            name=r["name"],
            required={uuid.UUID(k): int(v) for k, v in decode_json(r["skills"]).items()},
            steps=[Step.from_json(s) for s in decode_json(r["relaxation_steps"])],
            selection=r["agent_selection"],
            sticky_timeout_seconds=float(r["sticky_timeout_seconds"]),
            wrap_up_seconds=float(r["wrap_up_seconds"]),
            overflow_queue_id=r["overflow_queue_id"],
            max_wait_seconds=(
                float(r["max_wait_seconds"]) if r["max_wait_seconds"] is not None else None
            ),
        )
    return out


# Skills and profile queues come as parallel arrays: asyncpg decodes uuid[] and int[]
# in C, where JSON objects keyed by text would cost a parse and a uuid.UUID() each.
AGENTS_SQL = """
SELECT p.tenant_id, p.agent_id, p.capacity_points, p.used_points, p.idle_since, p.status,
       p.break_reason, p.missed_offers, a.display_name, a.status AS agent_status,
       coalesce(rp.channel_costs, '{}') AS channel_costs,
       sk.ids AS skill_ids, sk.levels AS skill_levels, sk.names AS skill_names,
       pq.ids AS queue_ids, pq.priorities AS queue_priorities, pq.delays AS queue_delays
  FROM agent_presence p
  JOIN agents a ON a.tenant_id = p.tenant_id AND a.id = p.agent_id
  LEFT JOIN routing_profiles rp
    ON rp.tenant_id = a.tenant_id AND rp.id = a.routing_profile_id
  LEFT JOIN LATERAL (
    SELECT array_agg(s.skill_id) AS ids, array_agg(s.proficiency) AS levels,
           array_agg(k.name::text) AS names
      FROM agent_skills s JOIN skills k ON k.tenant_id = s.tenant_id AND k.id = s.skill_id
     WHERE s.tenant_id = p.tenant_id AND s.agent_id = p.agent_id
  ) sk ON true
  LEFT JOIN LATERAL (
    SELECT array_agg(q.queue_id) AS ids, array_agg(q.priority) AS priorities,
           array_agg(q.delay_seconds) AS delays
      FROM routing_profile_queues q
     WHERE q.tenant_id = p.tenant_id AND q.routing_profile_id = a.routing_profile_id
  ) pq ON true
"""


def agent_snapshot(r: asyncpg.Record) -> AgentSnapshot:
    skill_ids = r["skill_ids"] or []
    queue_ids = r["queue_ids"] or []
    return AgentSnapshot(
        id=r["agent_id"],
        capacity=r["capacity_points"],
        used=r["used_points"],
        idle_since=ts(r["idle_since"]),
        skills=dict(zip(skill_ids, r["skill_levels"] or [], strict=True)),
        queues={
            q: (p, float(d))
            for q, p, d in zip(
                queue_ids, r["queue_priorities"] or [], r["queue_delays"] or [], strict=True
            )
        },
        channel_costs={k: int(v) for k, v in decode_json(r["channel_costs"]).items()},
        name=r["display_name"],
        skill_names=dict(zip(skill_ids, r["skill_names"] or [], strict=True)),
    )


async def load_available_agents(
    conn: asyncpg.Connection, tenant_ids: Sequence[uuid.UUID], shards: Sequence[int] | None = None
) -> dict[uuid.UUID, list[AgentSnapshot]]:
    """Agents who could take work now: available, active, with points to spare."""
    sql = AGENTS_SQL + (  # noqa: S608 - constant text
        " WHERE p.tenant_id = ANY($1::uuid[]) AND p.status = 'available'"
        " AND a.status = 'active' AND p.capacity_points - p.used_points >= coalesce("
        "   (SELECT min(c.value::int) FROM jsonb_each_text(rp.channel_costs) c), 1)"
    )
    args: list[Any] = [list(tenant_ids)]
    if shards is not None:
        sql += " AND p.shard = ANY($2::smallint[])"
        args.append(list(shards))
    rows = await conn.fetch(sql, *args)
    out: dict[uuid.UUID, list[AgentSnapshot]] = defaultdict(list)
    for r in rows:
        out[r["tenant_id"]].append(agent_snapshot(r))
    return out


async def load_agent(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, agent_id: uuid.UUID
) -> asyncpg.Record | None:
    """One agent's presence row with its routing inputs (any status)."""
    row: asyncpg.Record | None = await conn.fetchrow(
        AGENTS_SQL + " WHERE p.tenant_id = $1 AND p.agent_id = $2", tenant_id, agent_id
    )
    return row


_CONTACT_COLUMNS = """
    c.tenant_id, c.id, c.queue_id, c.channel, c.priority, c.enqueued_at, c.queue_entered_at,
    c.extra_skills, c.attributes, c.sticky_agent_id, c.preferred_agent_ids, c.declined_by,
    c.declined_at, c.mode
"""


def contact_snapshot(r: asyncpg.Record) -> WaitingContact:
    return WaitingContact(
        id=r["id"],
        queue_id=r["queue_id"],
        channel=r["channel"],
        priority=r["priority"],
        enqueued_at=ts(r["enqueued_at"]),
        queue_entered_at=ts(r["queue_entered_at"]),
        extra_skills={
            uuid.UUID(s["skill_id"]): int(s["min_proficiency"])
            for s in decode_json(r["extra_skills"])
        },
        attributes=decode_json(r["attributes"]),
        sticky_agent_id=r["sticky_agent_id"],
        preferred_agent_ids=tuple(r["preferred_agent_ids"] or ()),
        declined_by=r["declined_by"],
        declined_at=ts(r["declined_at"]) if r["declined_at"] is not None else None,
        callback=r["mode"] == "callback",
        place=(r["priority"], r["enqueued_at"], r["id"]),
    )


Keyset = tuple[int, datetime, uuid.UUID]  # (priority, enqueued_at, id): a place in line


async def load_waiting(
    conn: asyncpg.Connection,
    queues: dict[uuid.UUID, dict[uuid.UUID, QueuePolicy]],
    per_queue: int,
    after: dict[tuple[uuid.UUID, uuid.UUID], Keyset] | None = None,
) -> dict[uuid.UUID, list[WaitingContact]]:
    """The head of every queue's line (``per_queue`` contacts each), so a long line in one
    queue never hides the others; with ``after``, the next page of the given
    (tenant, queue) lines, behind the place given."""
    tenants: list[uuid.UUID] = []
    queue_ids: list[uuid.UUID] = []
    prio: list[int | None] = []
    at: list[datetime | None] = []
    ids: list[uuid.UUID | None] = []
    for tenant_id, qs in queues.items():
        for qid in qs:
            if after is not None and (tenant_id, qid) not in after:
                continue
            place = after.get((tenant_id, qid)) if after is not None else None
            tenants.append(tenant_id)
            queue_ids.append(qid)
            prio.append(place[0] if place else None)
            at.append(place[1] if place else None)
            ids.append(place[2] if place else None)
    if not queue_ids:
        return {}
    rows = await conn.fetch(
        f"""
        SELECT {_CONTACT_COLUMNS}
          FROM unnest($1::uuid[], $2::uuid[], $4::int[], $5::timestamptz[], $6::uuid[])
               AS v(t, q, p, e, i)
          CROSS JOIN LATERAL (
            SELECT * FROM contacts c
             WHERE c.tenant_id = v.t AND c.queue_id = v.q AND c.state = 'queued'
               AND (v.p IS NULL OR (c.priority, c.enqueued_at, c.id) > (v.p, v.e, v.i))
             ORDER BY c.priority, c.enqueued_at, c.id
             LIMIT $3
          ) c
        """,  # noqa: S608 - column list is a constant
        tenants,
        queue_ids,
        per_queue,
        prio,
        at,
        ids,
    )
    out: dict[uuid.UUID, list[WaitingContact]] = defaultdict(list)
    for r in rows:
        out[r["tenant_id"]].append(contact_snapshot(r))
    return out
