""" "Why is this contact waiting?" and "why is (not) this agent getting work?", as a
supervisor asks them: the decision trail, every agent with the reason they are passed
over, and the agent's own view."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from app.routing.worker import Router
from tests.routing.conftest import (
    create_agent,
    enqueue,
    go_available,
    staffed_tenant,
    wait_offer,
)


async def routing_of(
    client: httpx.AsyncClient, tenant: dict[str, Any], contact_id: str
) -> dict[str, Any]:
    r = await client.get(f"/v1/contacts/{contact_id}/routing", headers=tenant["headers"])
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def agent_routing(
    client: httpx.AsyncClient, tenant: dict[str, Any], agent: dict[str, Any]
) -> dict[str, Any]:
    r = await client.get(f"/v1/agents/{agent['id']}/routing", headers=tenant["headers"])
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def do(client: httpx.AsyncClient, agent: dict[str, Any], rid: str, action: str) -> None:
    r = await client.post(f"/v1/reservations/{rid}/{action}", headers=agent["headers"])
    assert r.status_code == 200, r.text


async def test_the_trail_tells_each_step_and_why(client: httpx.AsyncClient, router: Router) -> None:
    t = await staffed_tenant(client, agents=2, queue={"wrap_up_seconds": 0})
    ana, ben = t["agents"]
    await go_available(client, ana)  # idle longest
    await go_available(client, ben)
    c = await enqueue(client, t, t["queue"]["id"], priority=3)
    first = await wait_offer(client, ana, c["id"])
    await do(client, ana, first["id"], "reject")
    second = await wait_offer(client, ben, c["id"])
    await do(client, ben, second["id"], "accept")
    await do(client, ben, second["id"], "complete")

    body = await routing_of(client, t, c["id"])
    assert body["state"] == "completed" and body["now"] is None
    trail = body["trail"]
    assert [(e["kind"], e["agent_id"]) for e in trail] == [
        ("enqueued", None),
        ("offered", ana["id"]),
        ("rejected", ana["id"]),
        ("offered", ben["id"]),
        ("accepted", ben["id"]),
        ("completed", ben["id"]),
    ]
    times = [datetime.fromisoformat(e["at"]) for e in trail]
    assert times == sorted(times)
    enqueued, offered, rejected, reoffered, accepted, completed = trail
    assert (enqueued["queue_id"], enqueued["priority"]) == (t["queue"]["id"], 3)
    assert offered["rule"] == "longest_idle" and offered["detail"].startswith("idle ")
    assert (offered["considered"], offered["eligible"]) == (2, 2)
    assert offered["reservation_id"] == first["id"]
    assert rejected["reason"] == "agent-rejected"
    # Ana declined it moments ago: Ben was the only one left to consider.
    assert reoffered["considered"] == 1 and reoffered["reservation_id"] == second["id"]
    assert accepted["waited_seconds"] > 0
    assert completed["reason"] == "no-wrap-up"


async def test_a_waiting_contact_names_every_agent_and_why_they_are_passed_over(
    client: httpx.AsyncClient, router: Router
) -> None:
    # A chat costs 50 of 100 points here: two fill an agent up.
    t = await staffed_tenant(
        client,
        agents=0,
        queue={"channels": ["voice", "chat"]},
        profile={"channel_costs": {"voice": 100, "chat": 50}},
    )
    billing, q, pid = t["skills"]["Billing"], t["queue"]["id"], t["profile"]["id"]
    r = await client.patch(
        f"/v1/queues/{q}",
        json={"required_skills": [{"skill_id": billing, "min_proficiency": 3}]},
        headers=t["headers"],
    )
    assert r.status_code == 200, r.text

    async def agent(name: str, level: int | None) -> dict[str, Any]:
        skills = [(billing, level)] if level else []
        return await create_agent(client, t, profile_id=pid, skills=skills, name=name)

    busy, novice, junior, lunching, absent = [
        await agent(n, lv)
        for n, lv in (("Busy", 3), ("Novice", None), ("Junior", 1), ("Lunch", 5), ("Gone", 4))
    ]
    # Busy is the only one who can take chats; she takes one and is offered another.
    await go_available(client, busy)
    chat = await enqueue(client, t, q)
    await do(client, busy, (await wait_offer(client, busy, chat["id"]))["id"], "accept")
    chat2 = await enqueue(client, t, q)
    await wait_offer(client, busy, chat2["id"])
    for who in (novice, junior):
        await go_available(client, who)
    r = await client.put(
        "/v1/agent/presence",
        json={"status": "break", "break_reason": "lunch"},
        headers=lunching["headers"],
    )
    assert r.status_code == 200, r.text
    call = await enqueue(client, t, q, channel="voice")

    now = (await routing_of(client, t, call["id"]))["now"]
    assert now["requirement"]["skills"] == [{"skill_id": billing, "min_proficiency": 3}]
    assert now["winner"] is None and now["ahead_in_line"] == 0
    assert now["agents_total"] == 5
    rows = {row["name"]: row for row in now["agents"]}
    assert (rows["Busy"]["code"], rows["Busy"]["reason"]) == (
        "no-capacity",
        "needs 100 points, 0 free",
    )
    assert rows["Novice"]["code"] == "missing-skill"
    assert (rows["Junior"]["code"], rows["Junior"]["reason"]) == (
        "low-proficiency",
        f"skill {billing} at 1, needs 3",
    )
    assert (rows["Lunch"]["code"], rows["Lunch"]["reason"]) == (
        "not-available",
        "status break (lunch)",
    )
    assert (rows["Gone"]["code"], rows["Gone"]["reason"]) == (
        "not-available",
        "status offline (never logged in)",
    )
    assert not any(row["eligible"] for row in now["agents"])
    assert now["summary"].startswith("no eligible agent: 1 of 3 available agents")

    # The agents' side of the same story.
    views = {a["display_name"]: await agent_routing(client, t, a) for a in (absent, lunching)}
    assert views["Gone"]["reasons"] == ["offline: not logged in, or heartbeats stopped"]
    assert views["Lunch"]["reasons"] == ["on break (lunch)"]
    junior_view = await agent_routing(client, t, junior)
    assert junior_view["receiving_work"] is False
    assert junior_view["reasons"] == [
        "waiting contacts need what this agent lacks: low-proficiency"
    ]
    assert [(w["contact_id"], w["code"]) for w in junior_view["waiting"]] == [
        (call["id"], "low-proficiency")
    ]
    assert junior_view["queues"][0]["waiting"] == 1
    # Busy has an offer to answer: receiving work, though full now.
    busy_view = await agent_routing(client, t, busy)
    assert busy_view["receiving_work"] is True
    assert busy_view["reasons"] == [
        "receiving work: 1 offer(s) waiting for the agent's answer",
        "at capacity: 100 of 100 points in use",
    ]
    assert busy_view["presence"]["used_points"] == 100


async def test_an_agent_sees_why_work_comes_or_not(
    client: httpx.AsyncClient, router: Router
) -> None:
    t = await staffed_tenant(client, agents=1, profile={"channel_costs": {"chat": 100}})
    agent = t["agents"][0]
    view = await agent_routing(client, t, agent)
    assert view["receiving_work"] is False and view["presence"]["status"] == "offline"
    await go_available(client, agent)
    view = await agent_routing(client, t, agent)
    assert view["receiving_work"] is False
    assert view["reasons"] == ["no contact is waiting in the queues this agent serves"]
    assert view["queues"] == [
        {
            "queue_id": t["queue"]["id"],
            "name": "Support",
            "priority": 1,
            "delay_seconds": 0.0,
            "waiting": 0,
        }
    ]
    c = await enqueue(client, t, t["queue"]["id"])
    offer = await wait_offer(client, agent, c["id"])
    view = await agent_routing(client, t, agent)
    assert view["receiving_work"] is True
    assert view["reasons"][0] == "receiving work: 1 offer(s) waiting for the agent's answer"
    await do(client, agent, offer["id"], "accept")
    view = await agent_routing(client, t, agent)
    assert view["receiving_work"] is False
    assert view["reasons"] == ["at capacity: 100 of 100 points in use"]
    assert view["presence"]["state"] == "busy"
    r = await client.get(
        "/v1/agents/019a2b7c-0000-7000-8000-0000000000a1/routing", headers=t["headers"]
    )
    assert (r.status_code, r.json()["code"]) == (404, "agent-not-found")
