"""The customer's timeline: chat, a handled voice call, a callback and consent, in the
order they happened, in cursor pages, filtered by kind and time."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import httpx

from app.db import bootstrap
from tests.customers.conftest import customer_of, say, timeline, webchat
from tests.routing.conftest import go_available, running_router, staffed_tenant, wait_offer


async def _step(
    client: httpx.AsyncClient, agent: dict[str, Any], rid: str, action: str, **body: Any
) -> None:
    r = await client.post(
        f"/v1/reservations/{rid}/{action}", json=body or None, headers=agent["headers"]
    )
    assert r.status_code == 200, r.text


async def test_timeline_shows_every_channel_in_time_order(
    client: httpx.AsyncClient,
    app: Any,
    clean_db: asyncpg.Connection,
    db_urls: bootstrap.DatabaseUrls,
) -> None:
    t = await staffed_tenant(
        client, agents=1, queue={"wrap_up_seconds": 600, "wrap_up_codes": ["Resolved"]}
    )
    h = t["headers"]
    agent = t["agents"][0]
    chat = await webchat(client, t)
    first = await say(app, t, chat, "v_timeline_0001", "Where is my order?")
    customer = str(await customer_of(clean_db, first))

    # She calls; the agent takes the call and wraps it up as resolved.
    r = await client.post(
        "/v1/contacts",
        json={"channel": "voice", "queue_id": t["queue"]["id"], "customer_ref": customer},
        headers=h,
    )
    assert r.status_code == 201, r.text
    call = r.json()
    async with running_router(db_urls):
        await go_available(client, agent)
        offer = await wait_offer(client, agent, call["id"])
        await _step(client, agent, offer["id"], "accept")
        await _step(client, agent, offer["id"], "complete")
        await _step(client, agent, offer["id"], "wrap-up", code="Resolved")
        r = await client.put(
            "/v1/agent/presence", json={"status": "offline"}, headers=agent["headers"]
        )
        assert r.status_code == 200, r.text

    await say(app, t, chat, "v_timeline_0001", "Thanks for the call!")
    r = await client.put(
        f"/v1/customers/{customer}/consents/sms", json={"status": "granted"}, headers=h
    )
    assert r.status_code == 200, r.text
    # Then asks to be called back (virtual hold) while nobody is available.
    r = await client.post(
        "/v1/contacts",
        json={"channel": "voice", "queue_id": t["queue"]["id"], "customer_ref": customer},
        headers=h,
    )
    callback = r.json()
    r = await client.post(
        f"/v1/contacts/{callback['id']}/callback", json={"number": "+12025550123"}, headers=h
    )
    assert r.status_code == 200, r.text

    full = await timeline(client, t, customer)
    items = full["items"]
    assert full["next_cursor"] is None
    kinds = [i["kind"] for i in items]
    # The conversation opens with its first message, at the same instant: either order.
    assert sorted(kinds[1:3]) == ["conversation.opened", "message.received"]
    assert [kinds[0], *kinds[3:]] == [
        "customer.created",
        "call",
        "message.received",
        "consent.changed",
        "callback",
    ]
    stamps = [(datetime.fromisoformat(i["at"]), i["id"]) for i in items]
    assert stamps == sorted(stamps)
    opened, message = sorted(items[1:3], key=lambda i: i["kind"])
    assert (opened["channel"], opened["conversation_id"]) == ("webchat", str(first.conversation_id))
    assert message["ref_id"] == str(first.message_id)
    assert message["summary"]["text"] == "Where is my order?"
    handled = items[3]
    assert (handled["id"], handled["channel"], handled["conversation_id"]) == (
        call["id"],
        "voice",
        None,
    )
    expected = {
        "queue_id": t["queue"]["id"],
        "queue_name": "Support",
        "state": "completed",
        "mode": "live",
        "agent_id": agent["id"],
        "agent_name": "Agent 0",
        "disposition": "Resolved",
    }
    assert expected.items() <= handled["summary"].items(), handled
    assert handled["summary"]["wait_seconds"] >= 0
    assert handled["summary"]["answered_at"] is not None
    later = items[6]
    assert later["summary"]["state"] == "queued"
    assert later["summary"]["callback_number"] == "+12025550123"

    # Cursor pages of two walk the same items.
    walked: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = await timeline(client, t, customer, **params)
        walked += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert walked == items

    # Filters: kinds, and an open time window.
    calls = await timeline(client, t, customer, kinds="call,callback")
    assert [i["id"] for i in calls["items"]] == [call["id"], callback["id"]]
    window = await timeline(client, t, customer, after=items[2]["at"], before=items[6]["at"])
    assert [i["kind"] for i in window["items"]] == [
        "call",
        "message.received",
        "consent.changed",
    ]
