"""Who gets which contact, as a contact-center operator would check it: skills and
proficiency, relaxation over time, priority and time in line, routing-profile priority,
sticky and preferred agents, overflow, the agent-selection rules, and capacity points
shared across channels. Each through the API, with a routing worker running."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from app.routing.worker import Router
from tests.conftest import create_tenant
from tests.routing.conftest import (
    add_profile,
    add_queue,
    create_agent,
    enqueue,
    get_contact,
    go_available,
    live_offers,
    staffed_tenant,
    wait_for,
    wait_offer,
)


async def handle(client: httpx.AsyncClient, agent: dict[str, Any], offer: dict[str, Any]) -> None:
    """Accept the offer and finish the work (queues here have no wrap-up time)."""
    for step in ("accept", "complete"):
        r = await client.post(f"/v1/reservations/{offer['id']}/{step}", headers=agent["headers"])
        assert r.status_code == 200, r.text
    assert r.json()["state"] == "completed"


async def offered_event(
    client: httpx.AsyncClient, tenant: dict[str, Any], contact_id: str
) -> dict[str, Any]:
    """The last 'offered' step of the contact's decision trail (rule, why)."""
    r = await client.get(f"/v1/contacts/{contact_id}/routing", headers=tenant["headers"])
    offered = [e for e in r.json()["trail"] if e["kind"] == "offered"]
    assert offered, r.json()
    event: dict[str, Any] = offered[-1]
    return event


async def set_skills(
    client: httpx.AsyncClient,
    tenant: dict[str, Any],
    agent: dict[str, Any],
    skills: list[tuple[str, int]],
) -> None:
    r = await client.patch(
        f"/v1/agents/{agent['id']}",
        json={"skills": [{"skill_id": s, "proficiency": p} for s, p in skills]},
        headers=tenant["headers"],
    )
    assert r.status_code == 200, r.text


def waited(contact: dict[str, Any]) -> float:
    """Seconds from entering the line to the offer."""
    start = datetime.fromisoformat(contact["enqueued_at"])
    return (datetime.fromisoformat(contact["offered_at"]) - start).total_seconds()


async def test_agents_below_the_minimum_or_without_the_skill_are_passed_over(
    client: httpx.AsyncClient, router: Router
) -> None:
    t = await staffed_tenant(
        client,
        agents=3,
        skills=("Billing", "Spanish"),
        queue={"required_skills": []},
        agent_skills=[[], [], []],
    )
    billing, spanish = t["skills"]["Billing"], t["skills"]["Spanish"]
    r = await client.patch(
        f"/v1/queues/{t['queue']['id']}",
        json={"required_skills": [{"skill_id": billing, "min_proficiency": 4}]},
        headers=t["headers"],
    )
    assert r.status_code == 200, r.text
    low, other, expert = t["agents"]
    for agent, skills in ((low, [(billing, 2)]), (other, [(spanish, 5)]), (expert, [(billing, 5)])):
        await set_skills(client, t, agent, skills)
    await go_available(client, low)
    await go_available(client, other)
    c = await enqueue(client, t, t["queue"]["id"])

    async def explained() -> dict[str, str] | None:
        r = await client.get(f"/v1/contacts/{c['id']}/routing", headers=t["headers"])
        rows = r.json()["now"]["agents"]
        codes = {row["agent_id"]: row.get("code") for row in rows}
        return codes if len(codes) == 3 else None

    codes = await wait_for(explained)
    assert codes[low["id"]] == "low-proficiency"
    assert codes[other["id"]] == "missing-skill"
    assert codes[expert["id"]] == "not-available"

    await go_available(client, expert)
    await wait_offer(client, expert, c["id"])
    assert await live_offers(client, low) == [] and await live_offers(client, other) == []


async def test_a_relaxation_step_lowers_the_minimum_once_the_contact_waited(
    client: httpx.AsyncClient, router: Router
) -> None:
    t = await create_tenant(client)
    r = await client.post("/v1/skills", json={"name": "Billing"}, headers=t["headers"])
    billing = r.json()["id"]
    q = await add_queue(
        client,
        t,
        required_skills=[{"skill_id": billing, "min_proficiency": 4}],
        relaxation_steps=[
            {"after_seconds": 1, "action": "lower_minimum", "skill_id": billing, "to": 2}
        ],
    )
    p = await add_profile(client, t, [{"queue_id": q["id"]}])
    junior = await create_agent(client, t, profile_id=p["id"], skills=[(billing, 2)])
    await go_available(client, junior)
    c = await enqueue(client, t, q["id"])
    await wait_offer(client, junior, c["id"])
    assert waited(await get_contact(client, t, c["id"])) >= 1.0
    offered = await offered_event(client, t, c["id"])
    assert offered["agent_id"] == junior["id"]
    assert [(s["action"], s["to"]) for s in offered["steps_applied"]] == [("lower_minimum", 2)]


async def test_priority_comes_before_time_in_line_and_equal_priorities_are_first_come(
    client: httpx.AsyncClient, router: Router
) -> None:
    # One agent, one chat at a time.
    t = await staffed_tenant(
        client, agents=1, profile={"channel_costs": {"chat": 100}}, queue={"wrap_up_seconds": 0}
    )
    agent, q = t["agents"][0], t["queue"]["id"]
    early = await enqueue(client, t, q, priority=5)
    later = await enqueue(client, t, q, priority=5)
    urgent = await enqueue(client, t, q, priority=1)
    middle = await enqueue(client, t, q, priority=3)
    positions = [(await get_contact(client, t, c["id"]))["position"] for c in (urgent, middle)]
    assert positions == [1, 2]
    assert (await get_contact(client, t, later["id"]))["position"] == 4

    await go_available(client, agent)
    served = []
    for _ in range(4):
        offer = await wait_offer(client, agent)
        served.append(offer["contact_id"])
        await handle(client, agent, offer)
    assert served == [urgent["id"], middle["id"], early["id"], later["id"]]


async def test_an_agent_serving_two_queues_takes_the_better_profile_priority_first(
    client: httpx.AsyncClient, router: Router
) -> None:
    t = await create_tenant(client)
    general = await add_queue(client, t, name="General", wrap_up_seconds=0)
    vip = await add_queue(client, t, name="VIP", wrap_up_seconds=0)
    p = await add_profile(
        client,
        t,
        [{"queue_id": general["id"], "priority": 2}, {"queue_id": vip["id"], "priority": 1}],
        channel_costs={"chat": 100},
    )
    agent = await create_agent(client, t, profile_id=p["id"])
    waiting_longer = await enqueue(client, t, general["id"])
    vip_contact = await enqueue(client, t, vip["id"])
    await go_available(client, agent)
    offer = await wait_offer(client, agent)
    assert offer["contact_id"] == vip_contact["id"] and offer["queue_id"] == vip["id"]
    await handle(client, agent, offer)
    assert (await wait_offer(client, agent))["contact_id"] == waiting_longer["id"]


async def test_the_customers_last_agent_is_held_for_them_while_the_sticky_timeout_runs(
    client: httpx.AsyncClient, router: Router
) -> None:
    t = await staffed_tenant(
        client, agents=2, queue={"sticky_timeout_seconds": 4, "wrap_up_seconds": 0}
    )
    ana, ben = t["agents"]
    q = t["queue"]["id"]
    await go_available(client, ana)
    await go_available(client, ben)
    # Ana has been idle longest: she gets the customer's first contact.
    first = await enqueue(client, t, q, customer_ref="cust-1")
    await handle(client, ana, await wait_offer(client, ana, first["id"]))

    # Now Ben has been idle longer, but the customer's last agent is Ana.
    second = await enqueue(client, t, q, customer_ref="cust-1")
    assert second["sticky_agent_id"] == ana["id"]
    offer = await wait_offer(client, ana, second["id"])
    assert (await offered_event(client, t, second["id"]))["rule"] == "sticky"
    await handle(client, ana, offer)

    # Ana takes a break: the next contact waits for her while the timeout runs, then
    # anyone may take it. Other customers' contacts go to Ben meanwhile.
    r = await client.put(
        "/v1/agent/presence",
        json={"status": "break", "break_reason": "lunch"},
        headers=ana["headers"],
    )
    assert r.status_code == 200, r.text
    third = await enqueue(client, t, q, customer_ref="cust-1")
    r = await client.get(f"/v1/contacts/{third['id']}/routing", headers=t["headers"])
    ben_row = next(a for a in r.json()["now"]["agents"] if a["agent_id"] == ben["id"])
    assert ben_row["code"] == "held-for-sticky-agent", ben_row
    someone_else = await enqueue(client, t, q, customer_ref="cust-2")
    await wait_offer(client, ben, someone_else["id"])
    await wait_offer(client, ben, third["id"])
    assert waited(await get_contact(client, t, third["id"])) >= 4.0


async def test_preferred_agents_are_picked_first_when_they_can_take_the_contact(
    client: httpx.AsyncClient, router: Router
) -> None:
    t = await staffed_tenant(client, agents=2, queue={"wrap_up_seconds": 0})
    ana, ben = t["agents"]
    q = t["queue"]["id"]
    await go_available(client, ana)  # idle longest
    await go_available(client, ben)
    c = await enqueue(client, t, q, preferred_agent_ids=[ben["id"]])
    offer = await wait_offer(client, ben, c["id"])
    why = await offered_event(client, t, c["id"])
    assert why["preferred"] is True and why["agent_id"] == ben["id"]
    r = await client.post(f"/v1/reservations/{offer['id']}/accept", headers=ben["headers"])
    assert r.status_code == 200, r.text

    # Ben on break: a contact preferring him goes to whoever can take it.
    r = await client.put(
        "/v1/agent/presence",
        json={"status": "break", "break_reason": "coaching"},
        headers=ben["headers"],
    )
    assert r.status_code == 200, r.text
    c2 = await enqueue(client, t, q, preferred_agent_ids=[ben["id"]])
    await wait_offer(client, ana, c2["id"])
    assert "preferred" not in await offered_event(client, t, c2["id"])


async def test_a_contact_waiting_past_the_maximum_overflows_to_the_next_queue(
    client: httpx.AsyncClient, router: Router
) -> None:
    t = await create_tenant(client)
    backup = await add_queue(client, t, name="Backup")
    front = await add_queue(
        client, t, name="Front", max_wait_seconds=1, overflow_queue_id=backup["id"]
    )
    p = await add_profile(client, t, [{"queue_id": backup["id"]}])
    agent = await create_agent(client, t, profile_id=p["id"])
    await go_available(client, agent)
    c = await enqueue(client, t, front["id"])
    offer = await wait_offer(client, agent, c["id"])
    assert offer["queue_id"] == backup["id"]
    moved = await get_contact(client, t, c["id"])
    assert (moved["queue_id"], moved["original_queue_id"]) == (backup["id"], front["id"])
    assert waited(moved) >= 1.0
    r = await client.get(f"/v1/contacts/{c['id']}/routing", headers=t["headers"])
    trail = r.json()["trail"]
    assert [e["kind"] for e in trail] == ["enqueued", "overflowed", "offered"]
    assert (trail[1]["from_queue_id"], trail[1]["to_queue_id"]) == (front["id"], backup["id"])


async def test_longest_idle_and_most_skilled_selection(
    client: httpx.AsyncClient, router: Router
) -> None:
    t = await staffed_tenant(client, agents=2, agent_skills=[[], []])
    billing = t["skills"]["Billing"]
    ana, ben = t["agents"]
    for agent, level in ((ana, 2), (ben, 5)):
        await set_skills(client, t, agent, [(billing, level)])
    skilled = await add_queue(
        client,
        t,
        name="Escalations",
        agent_selection="most_skilled",
        required_skills=[{"skill_id": billing, "min_proficiency": 1}],
    )
    r = await client.patch(
        f"/v1/routing-profiles/{t['profile']['id']}",
        json={"queues": [{"queue_id": t["queue"]["id"]}, {"queue_id": skilled["id"]}]},
        headers=t["headers"],
    )
    assert r.status_code == 200, r.text
    await go_available(client, ben)  # idle longest
    await go_available(client, ana)

    c1 = await enqueue(client, t, t["queue"]["id"])
    await wait_offer(client, ben, c1["id"])
    assert (await offered_event(client, t, c1["id"]))["rule"] == "longest_idle"
    # Now Ana has been idle longer, but the escalation queue wants the most skilled.
    c2 = await enqueue(client, t, skilled["id"])
    await wait_offer(client, ben, c2["id"])
    why = await offered_event(client, t, c2["id"])
    assert (why["rule"], why["detail"]) == ("most_skilled", "proficiency total 5")
    assert await live_offers(client, ana) == []


async def test_best_score_matches_the_customers_language(
    client: httpx.AsyncClient, router: Router
) -> None:
    t = await staffed_tenant(
        client,
        agents=2,
        skills=("Billing", "Spanish"),
        queue={"agent_selection": "best_score"},
        agent_skills=[[], []],
    )
    billing, spanish = t["skills"]["Billing"], t["skills"]["Spanish"]
    ana, ben = t["agents"]
    for agent, skills in ((ana, [(billing, 3)]), (ben, [(billing, 3), (spanish, 4)])):
        await set_skills(client, t, agent, skills)
    await go_available(client, ana)  # idle longest
    await go_available(client, ben)
    c = await enqueue(client, t, t["queue"]["id"], attributes={"language": "spanish"})
    await wait_offer(client, ben, c["id"])
    why = await offered_event(client, t, c["id"])
    assert (why["rule"], why["scorer"]) == ("best_score", "fit")


async def test_capacity_points_are_shared_across_channels(
    client: httpx.AsyncClient, router: Router
) -> None:
    # 100 points: a chat costs 34, a call 100. The agent holds two chats, never three,
    # and the call waits until all their chats are done.
    t = await staffed_tenant(
        client,
        agents=1,
        profile={"capacity_points": 100, "channel_costs": {"chat": 34, "voice": 100}},
        queue={"wrap_up_seconds": 0},
    )
    agent, q = t["agents"][0], t["queue"]["id"]
    await go_available(client, agent)
    chats = [await enqueue(client, t, q) for _ in range(3)]
    call = await enqueue(client, t, q, channel="voice")

    async def two_offers() -> list[dict[str, Any]] | None:
        offers = await live_offers(client, agent)
        return offers if len(offers) == 2 else None

    offers = await wait_for(two_offers)
    assert {o["contact_id"] for o in offers} == {chats[0]["id"], chats[1]["id"]}
    r = await client.get("/v1/agent/presence", headers=agent["headers"])
    assert (r.json()["used_points"], r.json()["capacity_points"]) == (68, 100)
    r = await client.get(f"/v1/contacts/{call['id']}/routing", headers=t["headers"])
    row = r.json()["now"]["agents"][0]
    assert (row["code"], row["reason"]) == ("no-capacity", "needs 100 points, 32 free")

    # Finishing one chat frees room for the third chat (ahead of the call), not the call.
    await handle(client, agent, offers[0])
    third = await wait_offer(client, agent, chats[2]["id"])
    await handle(client, agent, offers[1])
    await handle(client, agent, third)
    offer = await wait_offer(client, agent, call["id"])
    assert offer["points"] == 100
    assert (await get_contact(client, t, call["id"]))["state"] == "offered"
