"""What the widget reports besides chat: the pre-chat form (name, email: never a merge
on the visitor's word), the pages seen (with dwell times), and proactive invitations and
callback offers taken up."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

from tests.webchat.conftest import ORIGIN, open_session


def _daytime_zone() -> str:
    """A fixed-offset zone where it is about noon now (proactive rules keep quiet at
    night)."""
    offset = (12 - datetime.now(UTC).hour + 12) % 24 - 12  # -12..11
    return "Etc/GMT" + ("+" if offset <= 0 else "-") + str(abs(offset))


async def _rule(client: Any, tenant: dict[str, Any], action: str, url_part: str) -> dict[str, Any]:
    r = await client.post(
        "/v1/proactive-rules",
        json={
            "name": f"Rule {uuid.uuid4().hex[:6]}",
            "channel_id": tenant["channel"]["id"],
            "conditions": {"url_contains": url_part},
            "action": action,
            "message": "Can we help you choose?",
        },
        headers=tenant["headers"],
    )
    assert r.status_code == 201, r.text
    rule: dict[str, Any] = r.json()
    return rule


async def _view(client: Any, visitor: dict[str, Any], url: str, **body: Any) -> Any:
    return await client.post(
        "/v1/widget/page-views",
        json={"url": url, "attributes": {"timezone": _daytime_zone()}} | body,
        headers=visitor["headers"],
    )


async def test_the_pre_chat_form_names_the_visitor_and_links_a_new_email(client, widget, clean_db):
    visitor = await open_session(client, widget)
    r = await client.post(
        "/v1/widget/identify",
        json={"name": "  Jane   Doe ", "email": "Jane.Doe@Example.com"},
        headers=visitor["headers"],
    )
    assert r.status_code == 200, r.text
    assert r.json()["display_name"] == "Jane Doe"
    assert r.json()["email"]["status"] == "added"
    assert r.json()["email"]["address"] == "jane.doe@example.com"
    rows = await clean_db.fetch(
        "SELECT kind, value, verified, customer_id FROM customer_identities ORDER BY kind"
    )
    assert [(x["kind"], x["verified"]) for x in rows] == [("email", False), ("webchat", False)]
    assert rows[0]["customer_id"] == rows[1]["customer_id"]
    again = await client.post(
        "/v1/widget/identify", json={"email": "jane.doe@example.com"}, headers=visitor["headers"]
    )
    assert again.json()["email"]["status"] == "already_linked"

    # Someone else types Jane's address: a claim on their profile, not a merge.
    other = await open_session(client, widget)
    r = await client.post(
        "/v1/widget/identify", json={"email": "jane.doe@example.com"}, headers=other["headers"]
    )
    assert r.status_code == 200, r.text
    assert r.json()["email"]["status"] == "claimed"
    assert await clean_db.fetchval("SELECT count(*) FROM customers") == 2
    holder = await clean_db.fetchval(
        "SELECT customer_id FROM customer_identities WHERE kind = 'email'"
    )
    assert holder == rows[0]["customer_id"]
    claimed = await clean_db.fetchval(
        "SELECT attributes->>'claimed_email' FROM customers WHERE id <> $1", holder
    )
    assert claimed == "jane.doe@example.com"

    for body, field in (
        ({}, "body"),
        ({"email": "not-an-address"}, "body.email"),
        ({"name": "x", "phone": "1"}, "body.phone"),
    ):
        r = await client.post("/v1/widget/identify", json=body, headers=visitor["headers"])
        assert r.status_code == 422 and r.json()["field"] == field, r.text


async def test_page_views_are_kept_with_their_dwell_time(client, widget, clean_db):
    visitor = await open_session(client, widget)
    r = await _view(
        client,
        visitor,
        f"{ORIGIN}/shoes?size=42",
        title="Shoes",
        referrer="https://search.example/",
    )
    assert r.status_code == 201, r.text
    assert r.json()["invitation"] is None
    first = r.json()["page_view_id"]
    await asyncio.sleep(0.3)
    r = await _view(client, visitor, "https://www.acme.example/cart")  # the wildcard origin
    assert r.status_code == 201, r.text
    rows = await clean_db.fetch("SELECT id, url, title, dwell_seconds FROM page_views ORDER BY at")
    assert [x["url"] for x in rows] == [f"{ORIGIN}/shoes?size=42", "https://www.acme.example/cart"]
    assert str(rows[0]["id"]) == first and rows[0]["title"] == "Shoes"
    assert 0.3 <= rows[0]["dwell_seconds"] < 5 and rows[1]["dwell_seconds"] is None
    kinds = await clean_db.fetch(
        "SELECT summary->>'url' AS url FROM timeline_events WHERE kind = 'page.viewed' ORDER BY at"
    )
    assert len(kinds) == 2

    for body, field, code in (
        ({"url": "https://elsewhere.example/x"}, "body.url", "url-origin-not-allowed"),
        ({"url": "javascript:alert(1)"}, "body.url", "validation-failed"),
        (
            {"url": f"{ORIGIN}/", "attributes": {"bad key": 1}},
            "body.attributes",
            "validation-failed",
        ),
        ({"url": f"{ORIGIN}/", "attributes": {"k": {"nested": 1}}}, "body.attributes.k.str", None),
    ):
        r = await client.post("/v1/widget/page-views", json=body, headers=visitor["headers"])
        assert r.status_code == 422, r.text
        if code:
            assert r.json()["code"] == code and r.json()["field"] == field, r.json()
    assert await clean_db.fetchval("SELECT count(*) FROM page_views") == 2


async def test_a_chat_invitation_is_offered_and_taken_up(client, widget, clean_db):
    rule = await _rule(client, widget, "invite_chat", "/pricing")
    visitor = await open_session(client, widget)
    r = await _view(client, visitor, f"{ORIGIN}/pricing")
    assert r.status_code == 201, r.text
    invitation = r.json()["invitation"]
    assert invitation is not None, r.json()
    assert invitation["rule_id"] == rule["id"] and invitation["action"] == "invite_chat"
    assert invitation["message"] == "Can we help you choose?"

    url = f"/v1/widget/invitations/{invitation['decision_id']}/accept"
    stranger = await open_session(client, widget)
    r = await client.post(url, json={}, headers=stranger["headers"])
    assert r.status_code == 404 and r.json()["code"] == "invitation-not-found"

    r = await client.post(
        url, json={"text": "Yes, which plan fits me?"}, headers=visitor["headers"]
    )
    assert r.status_code == 201, r.text
    conv = r.json()["conversation"]
    assert conv["state"] == "queued" and r.json()["message"]["body"] == "Yes, which plan fits me?"
    attributes = await clean_db.fetchval(
        "SELECT attributes->>'invited_by_rule' FROM conversations WHERE id = $1",
        uuid.UUID(conv["id"]),
    )
    assert attributes == rule["id"]
    # Accepting again answers the same chat.
    r = await client.post(url, headers=visitor["headers"])
    assert r.status_code == 200 and r.json()["conversation"]["id"] == conv["id"]
    assert await clean_db.fetchval("SELECT count(*) FROM conversations") == 1


async def test_an_invitation_without_text_opens_a_routed_chat(client, widget, clean_db):
    await _rule(client, widget, "invite_chat", "/help")
    visitor = await open_session(client, widget)
    invitation = (await _view(client, visitor, f"{ORIGIN}/help")).json()["invitation"]
    r = await client.post(
        f"/v1/widget/invitations/{invitation['decision_id']}/accept", headers=visitor["headers"]
    )
    assert r.status_code == 201, r.text
    assert r.json()["message"] is None and r.json()["conversation"]["state"] == "queued"
    assert await clean_db.fetchval("SELECT count(*) FROM messages") == 0


async def test_a_callback_offer_is_taken_up(client, widget, clean_db):
    await _rule(client, widget, "offer_callback", "/returns")
    visitor = await open_session(client, widget)
    offer = (await _view(client, visitor, f"{ORIGIN}/returns")).json()["invitation"]
    assert offer is not None and offer["action"] == "offer_callback"
    r = await client.post(
        f"/v1/widget/invitations/{offer['decision_id']}/accept", headers=visitor["headers"]
    )
    assert r.status_code == 409 and r.json()["code"] == "not-a-chat-invitation"

    r = await client.post(
        "/v1/widget/callbacks",
        json={"phone": "+442079460958", "decision_id": offer["decision_id"]},
        headers=visitor["headers"],
    )
    assert r.status_code == 201, r.text
    callback = r.json()
    assert callback["position"] == 1
    contact = await clean_db.fetchrow(
        "SELECT mode, channel, callback_number FROM contacts WHERE id = $1",
        uuid.UUID(callback["callback_id"]),
    )
    assert contact["mode"] == "callback" and contact["channel"] == "voice"
    assert contact["callback_number"] == "+442079460958"
    r = await client.post("/v1/widget/callbacks", json={"phone": "12"}, headers=visitor["headers"])
    assert r.status_code == 422 and r.json()["field"] == "body.phone"
