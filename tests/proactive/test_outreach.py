"""Proactive outbound messages (POST /v1/customers/{id}/proactive-messages): opt-in
consent, the frequency cap shared with web chat invitations across channels, the
decision log, and 409 proactive-held when held back. SMS goes through the sandbox
provider channel; delivery is not asserted (the message is queued)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta
from typing import Any

import httpx

from app.conversations.delivery import drain
from app.db.base import utcnow
from tests.proactive.conftest import World, daytime_zone, make_world

SHOP = "https://www.acme.example/shop"
PHONE = "+14155550123"


async def sandbox_sms(world: World) -> str:
    r = await world.client.post(
        "/v1/channels",
        json={
            "type": "sms",
            "name": "Texts",
            "config": {
                "provider": "sandbox",
                "provider_account_id": f"sandbox-{uuid.uuid4().hex[:12]}",
            },
        },
        headers=world.headers,
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def send(world: World, customer_id: Any, channel_id: str, **headers: str) -> httpx.Response:
    return await world.client.post(
        f"/v1/customers/{customer_id}/proactive-messages",
        json={"channel_id": channel_id, "text": "Your order shipped. Reply with any question."},
        headers=world.headers | headers,
    )


async def test_cap_is_shared_across_channels(app: Any, client: httpx.AsyncClient) -> None:
    world = await make_world(app, client)
    sms = await sandbox_sms(world)
    await world.rule(conditions={"min_pages_seen": 1})
    now = utcnow()
    visitor = await world.visitor(
        timezone=daytime_zone(now), phone=PHONE, consents={"sms": "granted"}
    )
    # Two web chat invitations (two visits), then one proactive SMS: three contacts.
    for days_ago in (2, 1):
        assert await world.view(visitor, now - timedelta(days=days_ago), SHOP) is not None
    r = await send(world, visitor.customer_id, sms)
    assert r.status_code == 201, r.text
    sent = r.json()
    assert (sent["decision"]["decision"], sent["decision"]["reason"]) == (
        "contact",
        "operator-request",
    )
    assert sent["decision"]["channel"] == "sms"
    message = sent["message"]
    assert (message["channel"], message["sender_kind"], message["direction"]) == (
        "sms",
        "bot",
        "outbound",
    )
    assert message["status"] == "queued"
    [conversation] = await world.rows(
        "SELECT id, channel, state, attributes FROM conversations WHERE customer_id = $1",
        visitor.customer_id,
    )
    assert conversation["id"] == uuid.UUID(sent["conversation_id"])
    assert (conversation["channel"], conversation["state"]) == ("sms", "open")
    stored = await world.rows(
        "SELECT to_address, body FROM messages WHERE conversation_id = $1", conversation["id"]
    )
    assert [(m["to_address"], m["body"][:10]) for m in stored] == [(PHONE, "Your order")]

    # The fourth contact in the week is held, on whichever channel it comes.
    assert await world.view(visitor, now + timedelta(minutes=1), SHOP) is None
    held = (await world.decisions(visitor))[-1]
    assert (held["channel"], held["decision"], held["reason"]) == (
        "webchat",
        "hold",
        "frequency-cap",
    )
    detail = held["detail"] if isinstance(held["detail"], dict) else json.loads(held["detail"])
    assert (detail["contacts_in_window"], detail["max_contacts"]) == (3, 3)

    r = await send(world, visitor.customer_id, sms, **{"Idempotency-Key": "sms-4"})
    assert r.status_code == 409, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert (problem["code"], problem["reason"]) == ("proactive-held", "frequency-cap")
    assert problem["decision_detail"]["contacts_in_window"] == 3
    # A retry with the same key answers the same, and records nothing more.
    again = await send(world, visitor.customer_id, sms, **{"Idempotency-Key": "sms-4"})
    assert again.status_code == 409 and again.json()["decision_id"] == problem["decision_id"]
    # The held decision stays in the log; no second conversation was opened.
    r = await client.get(
        f"/v1/proactive-decisions?customer_id={visitor.customer_id}&decision=hold",
        headers=world.headers,
    )
    holds = r.json()["items"]
    assert [(h["channel"], h["reason"]) for h in holds] == [
        ("sms", "frequency-cap"),
        ("webchat", "frequency-cap"),
    ]
    assert holds[0]["id"] == problem["decision_id"]
    count = await world.rows("SELECT count(*) AS n FROM conversations")
    assert count[0]["n"] == 1
    timeline = await world.rows(
        "SELECT channel FROM timeline_events WHERE customer_id = $1 "
        "AND kind = 'proactive.invited' ORDER BY at",
        visitor.customer_id,
    )
    assert [e["channel"] for e in timeline] == ["webchat", "webchat", "sms"]
    await drain()  # the delivery attempt started after commit


async def test_racing_messages_cannot_both_take_the_last_place(
    app: Any, client: httpx.AsyncClient
) -> None:
    world = await make_world(app, client)
    sms = await sandbox_sms(world)
    await world.rule(conditions={"min_pages_seen": 1})
    now = utcnow()
    visitor = await world.visitor(
        timezone=daytime_zone(now), phone=PHONE, consents={"sms": "granted"}
    )
    for days_ago in (2, 1):
        assert await world.view(visitor, now - timedelta(days=days_ago), SHOP) is not None
    answers = await asyncio.gather(*(send(world, visitor.customer_id, sms) for _ in range(3)))
    assert sorted(r.status_code for r in answers) == [201, 409, 409]
    decisions = await world.decisions(visitor)
    assert sum(d["decision"] == "contact" for d in decisions) == 3
    await drain()


async def test_outreach_needs_opt_in(app: Any, client: httpx.AsyncClient) -> None:
    world = await make_world(app, client)
    sms = await sandbox_sms(world)
    zone = daytime_zone(utcnow())
    for consents in ({}, {"sms": "revoked"}, {"email": "granted"}):
        customer = await world.visitor(timezone=zone, phone=PHONE, consents=consents)
        r = await send(world, customer.customer_id, sms)
        assert r.status_code == 409, r.text
        assert (r.json()["code"], r.json()["reason"]) == ("proactive-held", "no-consent")
        assert r.json()["decision_detail"]["consent_rule"] == "opt-in"
        # Reuse the number for the next customer.
        await world.rows("DELETE FROM customer_identities WHERE kind = 'phone'")
    assert await world.rows("SELECT id FROM conversations") == []


async def test_outreach_refusals_name_the_field(app: Any, client: httpx.AsyncClient) -> None:
    world = await make_world(app, client)
    other = await make_world(app, client, company_name="Globex")
    sms = await sandbox_sms(world)
    no_phone = await world.visitor(consents={"sms": "granted"})
    r = await send(world, no_phone.customer_id, sms)
    assert (r.status_code, r.json()["code"], r.json()["field"]) == (
        422,
        "no-address-for-channel",
        "body.channel_id",
    )
    r = await send(world, no_phone.customer_id, str(world.channel_id))
    assert (r.status_code, r.json()["code"]) == (422, "channel-not-outbound")
    r = await send(world, no_phone.customer_id, str(other.channel_id))
    assert (r.status_code, r.json()["code"]) == (422, "unknown-reference")
    # Another tenant's customer does not exist here.
    stranger = await other.visitor()
    r = await send(world, stranger.customer_id, sms)
    assert (r.status_code, r.json()["code"]) == (404, "customer-not-found")
    r = await client.post(
        f"/v1/customers/{no_phone.customer_id}/proactive-messages",
        json={"channel_id": sms, "text": ""},
        headers=world.headers,
    )
    assert (r.status_code, r.json()["field"]) == (422, "body.text")
    assert await world.rows("SELECT id FROM proactive_decisions") == []


async def test_decision_log_pages(app: Any, client: httpx.AsyncClient) -> None:
    world = await make_world(app, client)
    await world.rule(conditions={"min_pages_seen": 1})
    a, b = await world.visitor(), await world.visitor(consents={"webchat": "revoked"})
    now = utcnow().replace(hour=12)
    await world.view(a, now - timedelta(days=1), SHOP)
    await world.view(a, now, SHOP)
    await world.view(b, now, SHOP)
    h = world.headers
    r = await client.get("/v1/proactive-decisions?limit=2", headers=h)
    page = r.json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    r = await client.get(f"/v1/proactive-decisions?limit=2&cursor={page['next_cursor']}", headers=h)
    assert len(r.json()["items"]) == 1 and r.json()["next_cursor"] is None
    r = await client.get(f"/v1/proactive-decisions?customer_id={b.customer_id}", headers=h)
    assert [(i["decision"], i["reason"]) for i in r.json()["items"]] == [("hold", "no-consent")]
    r = await client.get("/v1/proactive-decisions?decision=maybe", headers=h)
    assert (r.status_code, r.json()["field"]) == (422, "query.decision")
    other = await make_world(app, client, company_name="Globex")
    r = await client.get("/v1/proactive-decisions", headers=other.headers)
    assert r.json()["items"] == []
