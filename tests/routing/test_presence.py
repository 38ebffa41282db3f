"""Agent presence as agents and supervisors use it: going available, breaks with a
reason, going offline, heartbeats, and who may do what."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from app.db.tenant import bind_tenant, mint_scope
from app.routing import presence as presence_service
from app.routing.connection import raw
from app.routing.schemas import PresenceUpdate
from app.routing.worker import Router
from tests.conftest import create_user, login
from tests.routing.conftest import (
    enqueue,
    get_contact,
    go_available,
    live_offers,
    staffed_tenant,
    wait_for,
    wait_offer,
)


async def set_presence(
    client: httpx.AsyncClient, agent: dict[str, Any], **body: Any
) -> httpx.Response:
    return await client.put("/v1/agent/presence", json=body, headers=agent["headers"])


async def test_going_available_needs_an_active_agent_with_a_routing_profile(
    app: Any, client: httpx.AsyncClient
) -> None:
    t = await staffed_tenant(client, agents=2)
    ana, ben = t["agents"]
    h = t["headers"]
    r = await client.patch(f"/v1/agents/{ana['id']}", json={"routing_profile_id": None}, headers=h)
    assert r.status_code == 200, r.text
    r = await set_presence(client, ana, status="available")
    assert (r.status_code, r.json()["code"]) == (409, "no-routing-profile")
    # Offline and breaks need no profile.
    r = await set_presence(client, ana, status="break", break_reason="training")
    assert r.status_code == 200 and r.json()["state"] == "break"

    r = await set_presence(client, ben, status="break")
    assert (r.status_code, r.json()["field"]) == (422, "body.break_reason")
    r = await set_presence(client, ben, status="available", break_reason="lunch")
    assert (r.status_code, r.json()["field"]) == (422, "body.break_reason")
    r = await set_presence(client, ben, status="away")
    assert (r.status_code, r.json()["field"]) == (422, "body.status")
    r = await client.get("/v1/agent/presence", headers=ben["headers"])
    assert (r.json()["status"], r.json()["state"]) == ("offline", "offline")

    # A disabled agent cannot be put to work by a supervisor either.
    r = await client.patch(f"/v1/agents/{ben['id']}", json={"status": "disabled"}, headers=h)
    assert r.status_code == 200, r.text
    r = await client.put(
        f"/v1/agents/{ben['id']}/presence", json={"status": "available"}, headers=h
    )
    assert (r.status_code, r.json()["code"]) == (409, "agent-not-active")
    r = await client.put(
        f"/v1/agents/{uuid.uuid4()}/presence", json={"status": "offline"}, headers=h
    )
    assert (r.status_code, r.json()["code"]) == (404, "agent-not-found")


async def test_a_break_or_going_offline_withdraws_pending_offers_but_not_accepted_work(
    client: httpx.AsyncClient, router: Router
) -> None:
    t = await staffed_tenant(client, agents=2)
    ana, ben = t["agents"]
    q = t["queue"]["id"]
    await go_available(client, ana)
    talking = await enqueue(client, t, q)
    offer = await wait_offer(client, ana, talking["id"])
    r = await client.post(f"/v1/reservations/{offer['id']}/accept", headers=ana["headers"])
    assert r.status_code == 200, r.text
    pending = await enqueue(client, t, q)
    withdrawn = await wait_offer(client, ana, pending["id"])

    r = await set_presence(client, ana, status="break", break_reason="lunch")
    assert r.status_code == 200, r.text
    me = r.json()
    assert (me["status"], me["state"], me["break_reason"]) == ("break", "break", "lunch")
    assert me["used_points"] == 34  # the chat she is still handling
    assert [x["state"] for x in me["reservations"]] == ["in_progress"]
    r = await client.get(f"/v1/reservations/{withdrawn['id']}", headers=ana["headers"])
    assert (r.json()["state"], r.json()["reason"]) == ("rescinded", "agent-on-break")
    assert (await get_contact(client, t, pending["id"]))["state"] == "queued"
    assert (await get_contact(client, t, talking["id"]))["state"] == "in_progress"
    # Nobody else is available: the contact waits, and is not offered to Ana on break.
    await go_available(client, ben)
    await wait_offer(client, ben, pending["id"])
    assert await live_offers(client, ana) == []

    # Going offline withdraws Ben's pending offer the same way.
    r = await set_presence(client, ben, status="offline")
    assert r.status_code == 200 and r.json()["state"] == "offline"
    assert (await get_contact(client, t, pending["id"]))["state"] == "queued"
    kinds = [
        (e["kind"], e.get("reason"))
        for e in (
            await client.get(f"/v1/contacts/{pending['id']}/routing", headers=t["headers"])
        ).json()["trail"]
    ]
    assert kinds[-2:] == [("offered", None), ("rescinded", "agent-offline")], kinds


async def log_in_with_grace(
    app: Any, tenant: dict[str, Any], agent: dict[str, Any], change: PresenceUpdate, grace: float
) -> None:
    """Set the agent's status as PUT /v1/agent/presence does, with a short heartbeat grace
    period (the test app's is 30 s)."""
    scope = mint_scope(uuid.UUID(tenant["tenant"]["id"]))
    async with app.state.session_factory() as session, session.begin():
        await bind_tenant(session, scope)
        conn = await raw(session)
        await presence_service.set_status_on(
            conn, scope, uuid.UUID(agent["id"]), change, grace_seconds=grace
        )


async def test_an_agent_whose_heartbeats_stop_is_signed_out_and_the_offer_goes_back(
    app: Any, client: httpx.AsyncClient, router: Router
) -> None:
    t = await staffed_tenant(client, agents=2)
    ana, ben = t["agents"]
    # Both log in with a short grace period; only Ben's desktop keeps sending heartbeats.
    for agent in (ana, ben):
        await log_in_with_grace(app, t, agent, PresenceUpdate(status="available"), 1.5)
    r = await client.post("/v1/agent/heartbeat", headers=ben["headers"])
    assert r.status_code == 200 and r.json()["status"] == "available"
    c = await enqueue(client, t, t["queue"]["id"])
    offer = await wait_offer(client, ana, c["id"])  # idle longest

    async def signed_out() -> dict[str, Any] | None:
        r = await client.get(f"/v1/agents/{ana['id']}/presence", headers=t["headers"])
        return r.json() if r.json()["status"] == "offline" else None

    gone = await wait_for(signed_out, timeout=10)
    assert gone["heartbeat_expires_at"] is None and gone["reservations"] == []
    r = await client.get(f"/v1/reservations/{offer['id']}", headers=ana["headers"])
    assert (r.json()["state"], r.json()["reason"]) == ("rescinded", "agent-offline")
    # The contact goes to Ben, who kept his heartbeats up.
    await wait_offer(client, ben, c["id"])
    r = await client.get(f"/v1/agents/{ben['id']}/presence", headers=t["headers"])
    assert r.json()["status"] == "available"
    # Ana's desktop learns it was signed out on its next heartbeat.
    r = await client.post("/v1/agent/heartbeat", headers=ana["headers"])
    assert r.status_code == 200 and r.json()["status"] == "offline"


async def test_a_silent_agent_on_a_break_is_signed_out_too(
    app: Any, client: httpx.AsyncClient, router: Router
) -> None:
    # was: only a status of available scheduled the router, so an agent who went
    # straight into a break and closed the desktop stayed on break for ever.
    t = await staffed_tenant(client, agents=1)
    cleo = t["agents"][0]
    change = PresenceUpdate(status="break", break_reason="meeting")
    await log_in_with_grace(app, t, cleo, change, 1.0)

    async def signed_out() -> bool:
        r = await client.get(f"/v1/agents/{cleo['id']}/presence", headers=t["headers"])
        return bool(r.json()["status"] == "offline")

    await wait_for(signed_out, timeout=10)


async def test_supervisors_set_an_agents_presence_and_it_is_audited(
    app: Any, client: httpx.AsyncClient
) -> None:
    t = await staffed_tenant(client, agents=1)
    ana = t["agents"][0]
    sup = await create_user(app, t, "supervisor")
    sup_h = (await login(client, sup["email"]))["headers"]
    await go_available(client, ana)

    r = await client.put(
        f"/v1/agents/{ana['id']}/presence",
        json={"status": "break", "break_reason": "coaching"},
        headers=sup_h,
    )
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["break_reason"]) == ("break", "coaching")
    r = await client.get("/v1/agent/presence", headers=ana["headers"])
    assert (r.json()["status"], r.json()["break_reason"]) == ("break", "coaching")
    r = await client.get(f"/v1/agents/{ana['id']}/presence", headers=sup_h)
    assert r.status_code == 200 and r.json()["status"] == "break"

    r = await client.get(
        "/v1/audit-events", params={"action": "agent.presence"}, headers=t["headers"]
    )
    assert r.status_code == 200, r.text
    [event] = r.json()["items"]
    assert event["actor_id"] == sup["id"] and event["target_id"] == ana["id"]
    assert event["details"] == {"status": "break", "reason": "coaching"}


async def test_agents_and_administrators_stay_on_their_side(
    app: Any, client: httpx.AsyncClient
) -> None:
    t = await staffed_tenant(client, agents=2)
    ana, ben = t["agents"]
    admin = await create_user(app, t, "admin")
    admin_h = (await login(client, admin["email"]))["headers"]
    c = await enqueue(client, t, t["queue"]["id"])

    def refused(r: httpx.Response) -> str:
        assert r.status_code == 403, r.text
        code: str = r.json()["code"]
        return code

    # Agents work their own offers; contacts, explanations and colleagues are not theirs.
    for method, path in (
        ("GET", "/v1/contacts"),
        ("POST", "/v1/contacts"),
        ("GET", f"/v1/contacts/{c['id']}"),
        ("POST", f"/v1/contacts/{c['id']}/abandon"),
        ("GET", f"/v1/contacts/{c['id']}/routing"),
        ("GET", f"/v1/agents/{ben['id']}/routing"),
        ("GET", f"/v1/agents/{ben['id']}/presence"),
        ("PUT", f"/v1/agents/{ben['id']}/presence"),
    ):
        body = {"status": "offline"} if method == "PUT" else None
        r = await client.request(method, path, json=body, headers=ana["headers"])
        assert refused(r) == "insufficient-scope", (method, path)
    # Administrators (and the owner's API key) have no agent desk.
    for h in (admin_h, t["headers"]):
        for method, path in (
            ("GET", "/v1/agent/presence"),
            ("PUT", "/v1/agent/presence"),
            ("POST", "/v1/agent/heartbeat"),
        ):
            body = {"status": "available"} if method == "PUT" else None
            r = await client.request(method, path, json=body, headers=h)
            assert refused(r) in ("insufficient-scope", "agent-only"), (method, path)
    assert (await get_contact(client, t, c["id"]))["state"] == "queued"
