"""Offers from the agent's desk: accept, handle, wrap up (by the timer or with a code),
reject, let ring out; and whose reservation is whose."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import httpx

from app.db import bootstrap
from app.routing.worker import Router
from tests.routing.conftest import (
    enqueue,
    get_contact,
    go_available,
    live_offers,
    running_router,
    staffed_tenant,
    trail_kinds,
    wait_for,
    wait_offer,
)


async def reservation(client: httpx.AsyncClient, agent: dict[str, Any], rid: str) -> dict[str, Any]:
    r = await client.get(f"/v1/reservations/{rid}", headers=agent["headers"])
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def step(
    client: httpx.AsyncClient, agent: dict[str, Any], rid: str, action: str, **body: Any
) -> httpx.Response:
    return await client.post(
        f"/v1/reservations/{rid}/{action}", json=body or None, headers=agent["headers"]
    )


async def presence(client: httpx.AsyncClient, agent: dict[str, Any]) -> dict[str, Any]:
    r = await client.get("/v1/agent/presence", headers=agent["headers"])
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_accepted_work_is_handled_then_the_wrap_up_timer_completes_it(
    client: httpx.AsyncClient, router: Router
) -> None:
    t = await staffed_tenant(client, agents=1, queue={"wrap_up_seconds": 1})
    agent = t["agents"][0]
    await go_available(client, agent)
    c = await enqueue(client, t, t["queue"]["id"])
    offer = await wait_offer(client, agent, c["id"])
    assert (offer["points"], offer["channel"]) == (34, "chat")

    r = await step(client, agent, offer["id"], "accept")
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "in_progress" and r.json()["accepted_at"] is not None
    me = await presence(client, agent)
    assert (me["status"], me["state"], me["used_points"]) == ("available", "busy", 34)
    handled = await get_contact(client, t, c["id"])
    assert handled["state"] == "in_progress" and handled["agent_id"] == agent["id"]
    assert handled["wait_seconds"] is not None and handled["answered_at"] is not None

    r = await step(client, agent, offer["id"], "complete")
    assert r.status_code == 200, r.text
    wrap = r.json()
    assert wrap["state"] == "wrap_up"
    length = datetime.fromisoformat(wrap["wrap_up_expires_at"]) - datetime.fromisoformat(
        wrap["wrap_up_at"]
    )
    assert length.total_seconds() == 1
    assert (await presence(client, agent))["state"] == "wrap_up"
    assert (await get_contact(client, t, c["id"]))["state"] == "wrap_up"

    # The router ends the wrap-up when the timer runs out.
    async def completed() -> dict[str, Any] | None:
        res = await reservation(client, agent, offer["id"])
        return res if res["state"] == "completed" else None

    done = await wait_for(completed, timeout=10)
    assert done["reason"] == "wrap-up-timer"
    assert (await get_contact(client, t, c["id"]))["state"] == "completed"
    me = await presence(client, agent)
    assert (me["state"], me["used_points"], me["reservations"]) == ("available", 0, [])
    kinds = await trail_kinds(client, t, c["id"])
    assert kinds == ["enqueued", "offered", "accepted", "completed"], kinds


async def test_wrap_up_ends_with_one_of_the_queues_codes(
    client: httpx.AsyncClient, router: Router
) -> None:
    t = await staffed_tenant(
        client,
        agents=1,
        queue={"wrap_up_seconds": 600, "wrap_up_codes": ["Resolved", "Refund issued"]},
    )
    agent = t["agents"][0]
    await go_available(client, agent)
    c = await enqueue(client, t, t["queue"]["id"])
    offer = await wait_offer(client, agent, c["id"])
    rid = offer["id"]
    # Steps out of order are refused, naming the state they need.
    r = await step(client, agent, rid, "complete")
    assert (r.status_code, r.json()["code"]) == (409, "reservation-not-in-progress")
    r = await step(client, agent, rid, "wrap-up")
    assert (r.status_code, r.json()["code"]) == (409, "reservation-not-wrap-up")
    assert (await step(client, agent, rid, "accept")).status_code == 200
    r = await step(client, agent, rid, "accept")
    assert (r.status_code, r.json()["code"]) == (409, "reservation-not-offered")
    assert (await step(client, agent, rid, "complete")).status_code == 200

    r = await step(client, agent, rid, "wrap-up", code="Escalated")
    assert (r.status_code, r.json()["field"]) == (422, "body.code"), r.text
    assert "Resolved, Refund issued" in r.json()["detail"]
    assert (await reservation(client, agent, rid))["state"] == "wrap_up"

    r = await step(client, agent, rid, "wrap-up", code="refund issued")
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["reason"]) == ("completed", "agent-finished")
    done = await get_contact(client, t, c["id"])
    assert (done["state"], done["wrap_up_code"]) == ("completed", "Refund issued")
    assert (await presence(client, agent))["used_points"] == 0


async def test_a_rejected_contact_keeps_its_place_and_goes_to_someone_else(
    client: httpx.AsyncClient, router: Router
) -> None:
    # One chat at a time each.
    t = await staffed_tenant(client, agents=2, profile={"channel_costs": {"chat": 100}})
    ana, ben = t["agents"]
    q = t["queue"]["id"]
    first = await enqueue(client, t, q)
    second = await enqueue(client, t, q)
    await go_available(client, ana)
    offer = await wait_offer(client, ana, first["id"])

    r = await step(client, ana, offer["id"], "reject")
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["reason"]) == ("rejected", "agent-rejected")
    # Ana is not offered the contact she just declined: she gets the next one.
    await wait_offer(client, ana, second["id"])
    back = await get_contact(client, t, first["id"])
    assert (back["state"], back["position"], back["agent_id"]) == ("queued", 1, None)
    # The first contact is still first in line: Ben, free now, takes it.
    third = await enqueue(client, t, q, priority=5)
    await go_available(client, ben)
    await wait_offer(client, ben, first["id"])
    assert (await get_contact(client, t, third["id"]))["position"] == 1
    kinds = await trail_kinds(client, t, first["id"])
    assert kinds == ["enqueued", "offered", "rejected", "offered"], kinds


async def test_offers_that_ring_out_go_back_and_three_in_a_row_put_the_agent_on_break(
    client: httpx.AsyncClient, db_urls: bootstrap.DatabaseUrls
) -> None:
    t = await staffed_tenant(client, agents=2)
    ana, ben = t["agents"]
    q = t["queue"]["id"]

    async def rings_out(offer: dict[str, Any]) -> None:
        async def timed_out() -> bool:
            return (await reservation(client, ana, offer["id"]))["state"] == "timed_out"

        await wait_for(timed_out, timeout=10)

    async with running_router(db_urls, offer_timeout_seconds=2):
        await go_available(client, ana)
        contacts = [await enqueue(client, t, q)]
        first = await wait_offer(client, ana, contacts[0]["id"])
        await rings_out(first)
        # Too late to accept; the contact is back in line, the miss is counted.
        r = await step(client, ana, first["id"], "accept")
        assert (r.status_code, r.json()["code"]) == (409, "reservation-not-offered")
        assert (await reservation(client, ana, first["id"]))["reason"] == "ring-no-answer"
        back = await get_contact(client, t, contacts[0]["id"])
        assert (back["state"], back["missed_offers"], back["position"]) == ("queued", 1, 1)
        me = await presence(client, ana)
        assert (me["status"], me["missed_offers"], me["used_points"]) == ("available", 1, 0)
        assert (await trail_kinds(client, t, contacts[0]["id"]))[-1] == "timed_out"

        contacts.append(await enqueue(client, t, q))
        await rings_out(await wait_offer(client, ana, contacts[1]["id"]))
        assert (await presence(client, ana))["missed_offers"] == 2

        # The third offer rings out while a fourth, made later, is still pending.
        contacts.append(await enqueue(client, t, q))
        third = await wait_offer(client, ana, contacts[2]["id"])
        await asyncio.sleep(1.0)
        contacts.append(await enqueue(client, t, q))
        fourth = await wait_offer(client, ana, contacts[3]["id"])

        async def on_break() -> dict[str, Any] | None:
            me = await presence(client, ana)
            return me if me["status"] == "break" else None

        me = await wait_for(on_break, timeout=10)
        assert (me["break_reason"], me["used_points"], me["reservations"]) == (
            "missed-offers",
            0,
            [],
        )
        assert (await reservation(client, ana, third["id"]))["state"] == "timed_out"
        rescinded = await reservation(client, ana, fourth["id"])
        assert (rescinded["state"], rescinded["reason"]) == ("rescinded", "agent-on-break")
        for c in contacts:
            assert (await get_contact(client, t, c["id"]))["state"] == "queued"

        # Ben takes over, from the front of the line.
        await go_available(client, ben)
        await wait_offer(client, ben, contacts[0]["id"])
        assert await live_offers(client, ana) == []
        # Back from the break, Ana starts with a clean slate.
        assert (await go_available(client, ana))["missed_offers"] == 0


async def test_only_the_offered_agent_sees_and_acts_on_a_reservation(
    client: httpx.AsyncClient, router: Router
) -> None:
    t = await staffed_tenant(client, agents=2)
    other = await staffed_tenant(client, agents=1)
    ana, ben = t["agents"]
    stranger = other["agents"][0]
    await go_available(client, ana)
    c = await enqueue(client, t, t["queue"]["id"])
    offer = await wait_offer(client, ana, c["id"])
    for who in (ben, stranger):
        r = await client.get(f"/v1/reservations/{offer['id']}", headers=who["headers"])
        assert (r.status_code, r.json()["code"]) == (404, "reservation-not-found")
        for action in ("accept", "reject", "complete", "wrap-up"):
            r = await step(client, who, offer["id"], action)
            assert (r.status_code, r.json()["code"]) == (404, "reservation-not-found"), action
    # The tenant's owner works through the contacts API, not an agent's offers.
    r = await client.post(f"/v1/reservations/{offer['id']}/accept", headers=t["headers"])
    assert (r.status_code, r.json()["code"]) == (403, "insufficient-scope")
    assert (await reservation(client, ana, offer["id"]))["state"] == "offered"


async def test_a_double_click_counts_once(client: httpx.AsyncClient, router: Router) -> None:
    # was: concurrent requests all passed the state check, and each gave the agent's
    # points back (a 500 from the capacity CHECK, or room for more work than she has).
    t = await staffed_tenant(
        client, agents=1, queue={"wrap_up_seconds": 600}, profile={"channel_costs": {"chat": 30}}
    )
    agent, q = t["agents"][0], t["queue"]["id"]
    await go_available(client, agent)
    first, second = await enqueue(client, t, q), await enqueue(client, t, q)
    offers = [await wait_offer(client, agent, c["id"]) for c in (first, second)]
    for offer in offers:
        assert (await step(client, agent, offer["id"], "accept")).status_code == 200
    third = await enqueue(client, t, q)
    pending = await wait_offer(client, agent, third["id"])

    async def clicks(rid: str, action: str) -> list[int]:
        answers = await asyncio.gather(*(step(client, agent, rid, action) for _ in range(3)))
        return sorted(r.status_code for r in answers)

    assert await clicks(offers[0]["id"], "complete") == [200, 409, 409]
    assert await clicks(offers[0]["id"], "wrap-up") == [200, 409, 409]
    assert await clicks(pending["id"], "reject") == [200, 409, 409]
    me = await presence(client, agent)
    assert me["used_points"] == 30
    assert [(r["contact_id"], r["state"]) for r in me["reservations"]] == [
        (second["id"], "in_progress")
    ]
    assert (await get_contact(client, t, first["id"]))["state"] == "completed"
