"""Contacts through /v1/contacts as a tenant's systems and supervisors see them: place in
line and estimated wait, abandonment, callbacks, contact flows, the plan's quota, and
hostile input (refused with the field named, nothing written)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import httpx

from app.core.pagination import encode_cursor
from app.routing.worker import Router
from tests.conftest import create_tenant
from tests.routing.conftest import (
    add_queue,
    enqueue,
    get_contact,
    go_available,
    staffed_tenant,
    trail_kinds,
    wait_offer,
)

PROBLEM_JSON = "application/problem+json"


def problem(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = r.json()
    if code is not None:
        assert body["code"] == code, body
    return body


async def outbox_offers(admin_conn: asyncpg.Connection, agent_id: str) -> list[dict[str, Any]]:
    """The offers the agent's desktop was sent (what GET /v1/agent/stream delivers)."""
    rows = await admin_conn.fetch(
        "SELECT payload FROM outbox_events WHERE agent_id = $1 AND topic = 'offer.created' "
        "ORDER BY id",
        uuid.UUID(agent_id),
    )
    return [json.loads(r["payload"]) for r in rows]


async def test_waiting_contacts_see_their_place_in_line_and_an_estimated_wait(
    client: httpx.AsyncClient, router: Router
) -> None:
    # One agent who takes one chat at a time is busy with the first contact.
    t = await staffed_tenant(
        client, agents=1, profile={"channel_costs": {"chat": 100}}, queue={"wrap_up_seconds": 0}
    )
    agent, q = t["agents"][0], t["queue"]["id"]
    first = await enqueue(client, t, q)
    assert first["position"] == 1
    assert first["estimated_wait_seconds"] is None  # nobody serves the queue yet
    await go_available(client, agent)
    offer = await wait_offer(client, agent, first["id"])
    r = await client.post(f"/v1/reservations/{offer['id']}/accept", headers=agent["headers"])
    assert r.status_code == 200, r.text

    second = await enqueue(client, t, q)
    third = await enqueue(client, t, q, priority=5)
    assert (second["position"], third["position"]) == (1, 2)
    # No contact handled yet: three minutes a contact, one agent serving the queue.
    assert (second["estimated_wait_seconds"], third["estimated_wait_seconds"]) == (180, 360)
    # Served contacts have no place in line.
    served = await get_contact(client, t, first["id"])
    assert served["state"] == "in_progress"
    assert served["position"] is None and served["estimated_wait_seconds"] is None

    # The second leaves: the third moves up.
    r = await client.post(f"/v1/contacts/{second['id']}/abandon", headers=t["headers"])
    assert r.status_code == 200, r.text
    assert (await get_contact(client, t, third["id"]))["position"] == 1


async def test_an_abandoned_contact_leaves_the_line_and_its_offer_is_rescinded(
    client: httpx.AsyncClient, router: Router
) -> None:
    t = await staffed_tenant(client, agents=1)
    agent, q = t["agents"][0], t["queue"]["id"]
    await go_available(client, agent)
    c = await enqueue(client, t, q)
    offer = await wait_offer(client, agent, c["id"])
    r = await client.get("/v1/agent/presence", headers=agent["headers"])
    assert r.json()["used_points"] == 34  # a chat

    r = await client.post(f"/v1/contacts/{c['id']}/abandon", headers=t["headers"])
    assert r.status_code == 200, r.text
    gone = r.json()
    assert gone["state"] == "abandoned" and gone["abandoned_at"] is not None
    assert gone["wait_seconds"] is not None and gone["wait_seconds"] > 0
    assert gone["position"] is None

    # The agent's offer is withdrawn and their points come back.
    r = await client.get(f"/v1/reservations/{offer['id']}", headers=agent["headers"])
    assert (r.json()["state"], r.json()["reason"]) == ("rescinded", "contact-abandoned")
    r = await client.get("/v1/agent/presence", headers=agent["headers"])
    assert r.json()["used_points"] == 0 and r.json()["reservations"] == []
    kinds = await trail_kinds(client, t, c["id"])
    assert kinds == ["enqueued", "offered", "rescinded", "abandoned"], kinds
    # It stays abandoned: no second abandonment, no callback, never offered again.
    problem(
        await client.post(f"/v1/contacts/{c['id']}/abandon", headers=t["headers"]),
        409,
        "contact-not-waiting",
    )
    problem(
        await client.post(
            f"/v1/contacts/{c['id']}/callback",
            json={"number": "+12025550123"},
            headers=t["headers"],
        ),
        409,
        "contact-not-waiting",
    )
    c2 = await enqueue(client, t, q)
    assert (await wait_offer(client, agent))["contact_id"] == c2["id"]


async def test_a_callback_keeps_its_place_and_the_offer_says_whom_to_call(
    client: httpx.AsyncClient, router: Router, admin_conn: asyncpg.Connection
) -> None:
    t = await staffed_tenant(client, agents=1, profile={"channel_costs": {"voice": 100}})
    agent, q = t["agents"][0], t["queue"]["id"]
    first = await enqueue(client, t, q, channel="voice")
    second = await enqueue(client, t, q, channel="voice")
    r = await client.post(
        f"/v1/contacts/{first['id']}/callback",
        json={"number": "+442071838750"},
        headers=t["headers"],
    )
    assert r.status_code == 200, r.text
    cb = r.json()
    assert (cb["mode"], cb["callback_number"], cb["position"]) == (
        "callback",
        "+442071838750",
        1,
    )
    assert (await get_contact(client, t, second["id"]))["position"] == 2

    await go_available(client, agent)
    offer = await wait_offer(client, agent)
    assert offer["contact_id"] == first["id"]
    sent = await outbox_offers(admin_conn, agent["id"])
    assert sent[-1]["contact_id"] == first["id"]
    assert (sent[-1]["mode"], sent[-1]["callback_number"]) == ("callback", "+442071838750")
    assert "callback" in await trail_kinds(client, t, first["id"])


async def test_a_callback_needs_a_real_phone_number(client: httpx.AsyncClient) -> None:
    t = await staffed_tenant(client, agents=0)
    c = await enqueue(client, t, t["queue"]["id"], channel="voice")
    for number in ("12025550123", "+1234", "+10000000000", "+1202555012a", "+1 202 555 0123"):
        r = await client.post(
            f"/v1/contacts/{c['id']}/callback", json={"number": number}, headers=t["headers"]
        )
        assert problem(r, 422)["field"] == "body.number", number
    unchanged = await get_contact(client, t, c["id"])
    assert (unchanged["mode"], unchanged["callback_number"]) == ("live", None)
    r = await client.post(
        f"/v1/contacts/{uuid.uuid4()}/callback",
        json={"number": "+12025550123"},
        headers=t["headers"],
    )
    problem(r, 404, "contact-not-found")


async def _publish_flow(
    client: httpx.AsyncClient, t: dict[str, Any], channel: str, graph: dict[str, Any]
) -> str:
    r = await client.post(
        "/v1/flows",
        json={"name": f"Flow {uuid.uuid4().hex[:6]}", "channel": channel, "draft": graph},
        headers=t["headers"],
    )
    assert r.status_code == 201, r.text
    fid: str = r.json()["id"]
    r = await client.post(f"/v1/flows/{fid}/publish", headers=t["headers"])
    assert r.status_code == 201, r.text
    return fid


async def test_a_contact_flow_chooses_the_queue_priority_and_skills(
    client: httpx.AsyncClient, router: Router
) -> None:
    t = await staffed_tenant(client, agents=1, skills=("Billing", "VIP"))
    vip = t["skills"]["VIP"]
    sales = await add_queue(client, t, name="Sales", channels=["voice"])
    graph = {
        "start": "menu",
        "nodes": {
            "menu": {
                "type": "menu",
                "prompt": "Sales 1, support 2.",
                "options": {"1": "sales", "2": "support", "9": "bye"},
                "on_invalid": "support",
            },
            "sales": {
                "type": "route_to_queue",
                "queue_id": sales["id"],
                "priority": 2,
                "extra_skills": [{"skill_id": vip, "min_proficiency": 3}],
            },
            "support": {"type": "route_to_queue", "queue_id": t["queue"]["id"]},
            "bye": {"type": "say", "text": "Goodbye.", "next": "end"},
            "end": {"type": "end"},
        },
    }
    fid = await _publish_flow(client, t, "voice", graph)

    c = await enqueue(client, t, channel="voice", flow_id=fid, flow_inputs=["1"])
    assert c["queue_id"] == sales["id"] and c["priority"] == 2
    assert c["required_skills"] == [{"skill_id": vip, "min_proficiency": 3}]
    r = await client.get(f"/v1/contacts/{c['id']}/routing", headers=t["headers"])
    enqueued = r.json()["trail"][0]
    assert (enqueued["kind"], enqueued["flow_id"]) == ("enqueued", fid)

    # Support is staffed: a contact the flow sends there is offered to its agent.
    agent = t["agents"][0]
    await go_available(client, agent)
    c2 = await enqueue(client, t, channel="voice", flow_id=fid, flow_inputs=["2"])
    assert c2["queue_id"] == t["queue"]["id"]
    await wait_offer(client, agent, c2["id"])
    assert (await get_contact(client, t, c["id"]))["state"] == "queued"  # nobody has VIP

    # A caller who hangs up in the menu is not queued; unanswered menus say so.
    r = await client.post(
        "/v1/contacts",
        json={"channel": "voice", "flow_id": fid, "flow_inputs": ["9"]},
        headers=t["headers"],
    )
    assert problem(r, 422, "flow-did-not-queue")["field"] == "body.flow_id"
    r = await client.post(
        "/v1/contacts", json={"channel": "voice", "flow_id": fid}, headers=t["headers"]
    )
    assert problem(r, 422, "flow-needs-input")["field"] == "body.flow_inputs"
    # A voice flow does not route chats; an unpublished or unknown flow is named.
    r = await client.post(
        "/v1/contacts",
        json={"channel": "chat", "flow_id": fid, "flow_inputs": ["2"]},
        headers=t["headers"],
    )
    assert problem(r, 422, "channel-not-taken")["field"] == "body.channel"
    r = await client.post(
        "/v1/flows", json={"name": "Draft only", "channel": "voice"}, headers=t["headers"]
    )
    draft_id = r.json()["id"]
    for flow_id, code in ((draft_id, "flow-not-published"), (str(uuid.uuid4()), None)):
        r = await client.post(
            "/v1/contacts", json={"channel": "voice", "flow_id": flow_id}, headers=t["headers"]
        )
        assert problem(r, 422, code)["field"] == "body.flow_id"
    # A caller who takes the offered callback is queued as one, whatever the flow says next.
    offer_graph = {
        "start": "offer",
        "nodes": {
            "offer": {
                "type": "offer_callback",
                "queue_id": t["queue"]["id"],
                "prompt": "Shall we call you back?",
                "accepted": "thanks",
                "declined": "end",
            },
            "thanks": {"type": "say", "text": "We will call you.", "next": "end"},
            "end": {"type": "end"},
        },
    }
    callback_flow = await _publish_flow(client, t, "voice", offer_graph)
    cb = await enqueue(client, t, channel="voice", flow_id=callback_flow, flow_inputs=["yes"])
    assert (cb["mode"], cb["queue_id"]) == ("callback", t["queue"]["id"])
    r = await client.post(
        "/v1/contacts",
        json={"channel": "voice", "flow_id": callback_flow, "flow_inputs": ["no"]},
        headers=t["headers"],
    )
    problem(r, 422, "flow-did-not-queue")
    r = await client.get("/v1/contacts", headers=t["headers"])
    assert {x["id"] for x in r.json()} == {c["id"], c2["id"], cb["id"]}


async def test_the_trial_plan_allows_twenty_contacts_at_once(
    client: httpx.AsyncClient, admin_conn: asyncpg.Connection
) -> None:
    t = await staffed_tenant(client, agents=0)
    q = t["queue"]["id"]
    first = [await enqueue(client, t, q) for _ in range(20)]
    r = await client.post(
        "/v1/contacts", json={"channel": "chat", "queue_id": q}, headers=t["headers"]
    )
    body = problem(r, 403, "quota-exceeded")
    assert (body["limit"], body["current"]) == (20, 20)
    assert len((await client.get("/v1/contacts", headers=t["headers"])).json()) == 20
    # Ended contacts stop counting.
    r = await client.post(f"/v1/contacts/{first[0]['id']}/abandon", headers=t["headers"])
    assert r.status_code == 200, r.text
    await enqueue(client, t, q)
    # A plan without the limit takes more.
    await admin_conn.execute(
        "UPDATE tenants SET plan = 'enterprise' WHERE id = $1", uuid.UUID(t["tenant"]["id"])
    )
    await enqueue(client, t, q)


async def test_hostile_input_is_refused_naming_the_field_and_writes_nothing(
    client: httpx.AsyncClient, admin_conn: asyncpg.Connection
) -> None:
    t = await staffed_tenant(client, agents=1, queue={"channels": ["chat"]})
    other = await staffed_tenant(client, agents=1)
    q, skill = t["queue"]["id"], t["skills"]["Billing"]
    h = t["headers"] | {"content-type": "application/json"}

    def body(**extra: Any) -> str:
        return json.dumps({"channel": "chat", "queue_id": q} | extra)

    cases: list[tuple[str, str, str]] = [
        (body(queue_id=str(uuid.uuid4())), "body.queue_id", "unknown-reference"),
        (body(queue_id=other["queue"]["id"]), "body.queue_id", "unknown-reference"),
        (
            body(required_skills=[{"skill_id": str(uuid.uuid4())}]),
            "body.required_skills.0.skill_id",
            "unknown-reference",
        ),
        (
            body(required_skills=[{"skill_id": skill}, {"skill_id": other["skills"]["Billing"]}]),
            "body.required_skills.1.skill_id",
            "unknown-reference",
        ),
        (
            body(required_skills=[{"skill_id": skill}, {"skill_id": skill, "min_proficiency": 3}]),
            "body.required_skills",
            "validation-failed",
        ),
        (
            body(preferred_agent_ids=[other["agents"][0]["id"]]),
            "body.preferred_agent_ids.0",
            "unknown-reference",
        ),
        (body(channel="voice"), "body.channel", "channel-not-taken"),
        (body(flow_id=str(uuid.uuid4())), "body.queue_id", "validation-failed"),
        (json.dumps({"channel": "chat"}), "body.queue_id", "validation-failed"),
        (body(attributes={"notes": "x" * 9000}), "body.attributes", "validation-failed"),
        (
            body(attributes={"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}}),
            "body.attributes",
            "validation-failed",
        ),
        (body(priority=0), "body.priority", "validation-failed"),
        (body(priority="1"), "body.priority", "validation-failed"),
        (body(customer_ref="cust\x00-1"), "body.customer_ref", "validation-failed"),
        (body(customer_ref=""), "body.customer_ref", "validation-failed"),
        (body(unknown_field=1), "body.unknown_field", "validation-failed"),
        # was: 500 (PostgreSQL jsonb refuses NaN, Infinity and lone surrogates)
        (body()[:-1] + ', "attributes": {"score": NaN}}', "body.attributes", "validation-failed"),
        (body()[:-1] + ', "attributes": {"x": -Infinity}}', "body.attributes", "validation-failed"),
        (body()[:-1] + ', "attributes": {"x": "\\ud800"}}', "body.attributes", "validation-failed"),
    ]
    for raw, field, code in cases:
        r = await client.post("/v1/contacts", content=raw.encode(), headers=h)
        got = problem(r, 422)
        assert (got["field"], got["code"]) == (field, code), (raw[:120], got)

    assert await admin_conn.fetchval("SELECT count(*) FROM contacts") == 0
    assert await admin_conn.fetchval("SELECT count(*) FROM routing_events") == 0
    assert await admin_conn.fetchval("SELECT count(*) FROM routing_work") == 0
    # Unknown contacts are 404, another tenant's too.
    c = await enqueue(client, other, other["queue"]["id"])
    for path in ("", "/routing"):
        problem(await client.get(f"/v1/contacts/{c['id']}{path}", headers=t["headers"]), 404)
    problem(
        await client.post(f"/v1/contacts/{c['id']}/abandon", headers=t["headers"]),
        404,
        "contact-not-found",
    )
    assert (await get_contact(client, other, c["id"]))["state"] == "queued"


async def test_a_full_queue_overflows_or_refuses(client: httpx.AsyncClient) -> None:
    t = await create_tenant(client)
    spill = await add_queue(client, t, name="Spill", channels=["chat"])
    main = await add_queue(
        client,
        t,
        name="Main",
        channels=["chat", "voice"],
        max_waiting=1,
        overflow_queue_id=spill["id"],
    )
    lone = await add_queue(client, t, name="Lone", channels=["chat"], max_waiting=1)
    first = await enqueue(client, t, main["id"])
    second = await enqueue(client, t, main["id"])
    assert (first["queue_id"], second["queue_id"]) == (main["id"], spill["id"])
    r = await client.get(f"/v1/contacts/{second['id']}/routing", headers=t["headers"])
    enqueued = r.json()["trail"][0]
    assert enqueued["redirected_from"] == main["id"] and "queue full" in enqueued["reason"]
    # The spill queue takes no voice: a call finds no room.
    r = await client.post(
        "/v1/contacts", json={"channel": "voice", "queue_id": main["id"]}, headers=t["headers"]
    )
    problem(r, 409, "queue-full")

    await enqueue(client, t, lone["id"])
    r = await client.post(
        "/v1/contacts", json={"channel": "chat", "queue_id": lone["id"]}, headers=t["headers"]
    )
    assert problem(r, 409, "queue-full")["max_waiting"] == 1
    r = await client.get("/v1/contacts", params={"queue_id": lone["id"]}, headers=t["headers"])
    assert len(r.json()) == 1


async def test_contacts_page_through_the_link_header(client: httpx.AsyncClient) -> None:
    t = await staffed_tenant(client, agents=0)
    made = [(await enqueue(client, t, t["queue"]["id"]))["id"] for _ in range(5)]
    other = await staffed_tenant(client, agents=0)
    foreign = (await enqueue(client, other, other["queue"]["id"]))["id"]

    seen: list[str] = []
    url: str | None = "/v1/contacts?limit=2"
    pages = 0
    while url is not None:
        r = await client.get(url, headers=t["headers"])
        assert r.status_code == 200, r.text
        assert len(r.json()) <= 2
        seen += [c["id"] for c in r.json()]
        pages += 1
        link = r.headers.get("link")
        url = link.split(">", 1)[0].lstrip("<") if link else None
        if link:
            assert link.endswith('>; rel="next"') and "limit=2" in link
    # Newest first, every contact exactly once, and the last page announces nothing more.
    assert (pages, seen) == (3, made[::-1])
    r = await client.get("/v1/contacts?limit=5", headers=t["headers"])
    assert "link" not in r.headers and [c["id"] for c in r.json()] == made[::-1]

    # Filters carry over to the next page.
    r = await client.get("/v1/contacts?limit=1&state=queued", headers=t["headers"])
    assert "state=queued" in r.headers["link"]

    # Another tenant's contact, or a cursor we never issued, is no cursor.
    for cursor in (encode_cursor(uuid.UUID(foreign)), encode_cursor(uuid.uuid4())):
        r = await client.get(f"/v1/contacts?cursor={cursor}", headers=t["headers"])
        assert problem(r, 422)["detail"] == "cursor is not one this API issued"
    r = await client.get("/v1/contacts?cursor=not-a-cursor", headers=t["headers"])
    problem(r, 422)
