"""Answers to "why is this contact waiting?" and "why is (not) this agent getting work?".

The decision trail is what happened (``routing_events``); the live part runs the same
policy code as the routing workers against the tenant's agents now.
"""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from app.core.errors import NotFound
from app.db.tenant import TenantScope
from app.routing import presence as presence_service
from app.routing import snapshots
from app.routing.contacts import get_row
from app.routing.policy import explain_agent, explain_contact, plan_round
from app.routing.schemas import AgentRouting, RoutingTrail


async def _all_agents(
    conn: asyncpg.Connection, scope: TenantScope
) -> tuple[list[Any], list[dict[str, Any]]]:
    """Available agents as snapshots, and everyone else with the reason they are out."""
    rows = await conn.fetch(snapshots.AGENTS_SQL + " WHERE p.tenant_id = $1", scope.tenant_id)
    present = {r["agent_id"] for r in rows}
    available = []
    out: list[dict[str, Any]] = []
    for r in rows:
        if r["status"] == "available" and r["agent_status"] == "active":
            available.append(snapshots.agent_snapshot(r))
            continue
        reason = f"status {r['status']}"
        if r["break_reason"]:
            reason += f" ({r['break_reason']})"
        if r["agent_status"] != "active":
            reason = f"agent is {r['agent_status']}"
        out.append(
            {
                "agent_id": str(r["agent_id"]),
                "name": r["display_name"],
                "eligible": False,
                "code": "not-available",
                "reason": reason,
            }
        )
    never = await conn.fetch(
        "SELECT id, display_name FROM agents WHERE tenant_id = $1 AND NOT (id = ANY($2::uuid[]))",
        scope.tenant_id,
        list(present),
    )
    for r in never:
        out.append(
            {
                "agent_id": str(r["id"]),
                "name": r["display_name"],
                "eligible": False,
                "code": "not-available",
                "reason": "status offline (never logged in)",
            }
        )
    return available, out


async def contact_trail(
    conn: asyncpg.Connection, scope: TenantScope, contact_id: uuid.UUID
) -> RoutingTrail:
    row = await get_row(conn, scope, contact_id)
    events = await conn.fetch(
        "SELECT kind, at, agent_id, detail FROM routing_events "
        "WHERE tenant_id = $1 AND contact_id = $2 ORDER BY at, id",
        scope.tenant_id,
        contact_id,
    )
    trail = [
        {
            "at": e["at"].isoformat(),
            "kind": e["kind"],
            "agent_id": str(e["agent_id"]) if e["agent_id"] else None,
            **snapshots.decode_json(e["detail"]),
        }
        for e in events
    ]
    now_part: dict[str, Any] | None = None
    if row["state"] == "queued":
        queues = (await snapshots.load_queues(conn, [scope.tenant_id])).get(scope.tenant_id, {})
        available, unavailable = await _all_agents(conn, scope)
        ahead = await conn.fetchval(
            "SELECT count(*) FROM contacts WHERE tenant_id = $1 AND queue_id = $2 "
            "AND state = 'queued' AND (priority, enqueued_at) < ($3, $4)",
            scope.tenant_id,
            row["queue_id"],
            row["priority"],
            row["enqueued_at"],
        )
        now = datetime.now(UTC).timestamp()
        now_part = explain_contact(
            now,
            queues,
            snapshots.contact_snapshot(row),
            available,
            ahead=int(ahead or 0),
        )
        held = await held_agents(conn, scope, queues, available, now)
        for agent_row in now_part["agents"]:
            holding = held.get(uuid.UUID(agent_row["agent_id"]))
            if agent_row["eligible"] and holding is not None and holding != contact_id:
                agent_row.update(
                    eligible=False,
                    code="held-for-larger-contact",
                    reason=f"kept free for contact {holding}, ahead in line, needing more points",
                )
        now_part["agents"] = (
            now_part["agents"] + unavailable[: max(0, 25 - len(now_part["agents"]))]
        )
        now_part["agents_total"] += len(unavailable)
        now_part["ahead_in_line"] = int(ahead or 0)
    return RoutingTrail(contact_id=contact_id, state=row["state"], trail=trail, now=now_part)


async def held_agents(
    conn: asyncpg.Connection,
    scope: TenantScope,
    queues: dict[uuid.UUID, Any],
    available: list[Any],
    now: float,
) -> dict[uuid.UUID, uuid.UUID]:
    """Agents the policy keeps free for a bigger contact ahead in line (a call behind
    which chats wait), as the next round would: agent -> that contact."""
    heads = await snapshots.load_waiting(conn, {scope.tenant_id: queues}, 50)
    plan = plan_round(now, queues, heads.get(scope.tenant_id, []), copy.deepcopy(available))
    return plan.held


async def agent_routing(
    conn: asyncpg.Connection, scope: TenantScope, agent_id: uuid.UUID
) -> AgentRouting:
    presence = await presence_service.read(conn, scope, agent_id)
    agent = await conn.fetchrow(
        "SELECT status, routing_profile_id FROM agents WHERE tenant_id = $1 AND id = $2",
        scope.tenant_id,
        agent_id,
    )
    if agent is None:
        raise NotFound("No such agent.", code="agent-not-found")
    reasons: list[str] = []
    if agent["status"] != "active":
        reasons.append(f"the agent is {agent['status']}")
    if agent["routing_profile_id"] is None:
        reasons.append("no routing profile: no queues, no capacity")
    if presence.status == "offline":
        reasons.append("offline: not logged in, or heartbeats stopped")
    elif presence.status == "break":
        reasons.append(f"on break ({presence.break_reason})")
    elif presence.used_points >= presence.capacity_points:
        reasons.append(
            f"at capacity: {presence.used_points} of {presence.capacity_points} points in use"
        )
    snap_row = await snapshots.load_agent(conn, scope.tenant_id, agent_id)
    queues_json: list[dict[str, Any]] = []
    waiting_json: list[dict[str, Any]] = []
    if snap_row is not None:
        snap = snapshots.agent_snapshot(snap_row)
        policies = (await snapshots.load_queues(conn, [scope.tenant_id])).get(scope.tenant_id, {})
        counts = {
            r["queue_id"]: r["n"]
            for r in await conn.fetch(
                "SELECT queue_id, count(*) AS n FROM contacts WHERE tenant_id = $1 "
                "AND queue_id = ANY($2::uuid[]) AND state = 'queued' GROUP BY queue_id",
                scope.tenant_id,
                list(snap.queues),
            )
        }
        for qid, (priority, delay) in sorted(snap.queues.items(), key=lambda kv: kv[1][0]):
            count = counts.get(qid, 0)
            q = policies.get(qid)
            queues_json.append(
                {
                    "queue_id": str(qid),
                    "name": q.name if q else None,
                    "priority": priority,
                    "delay_seconds": delay,
                    "waiting": int(count or 0),
                }
            )
        heads = await snapshots.load_waiting(
            conn, {scope.tenant_id: {q: policies[q] for q in snap.queues if q in policies}}, 25
        )
        waiting_json = explain_agent(
            datetime.now(UTC).timestamp(), snap, policies, heads.get(scope.tenant_id, [])
        )
        if not reasons and presence.status == "available":
            available, _ = await _all_agents(conn, scope)
            now = datetime.now(UTC).timestamp()
            holding = (await held_agents(conn, scope, policies, available, now)).get(agent_id)
            if holding is not None:
                reasons.append(
                    f"kept free for contact {holding}, ahead in line, that needs more points "
                    "than the agent has free now"
                )
        if not reasons:
            if not any(q["waiting"] for q in queues_json):
                reasons.append("no contact is waiting in the queues this agent serves")
            elif not any(w["eligible"] for w in waiting_json):
                codes = sorted({w.get("code", "") for w in waiting_json})
                reasons.append("waiting contacts need what this agent lacks: " + ", ".join(codes))
    # An offer waiting for the agent's answer is work received, even if it fills them up.
    offers = sum(1 for r in presence.reservations if r.state == "offered")
    receiving = presence.status == "available" and (offers > 0 or not reasons)
    if offers:
        reasons.insert(0, f"receiving work: {offers} offer(s) waiting for the agent's answer")
    elif receiving:
        reasons.append("available with room: the next matching round can offer work")
    return AgentRouting(
        agent_id=agent_id,
        receiving_work=receiving,
        reasons=reasons,
        presence=presence,
        queues=queues_json,
        waiting=waiting_json,
    )
