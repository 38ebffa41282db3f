"""Chatting through the widget's REST API: a first message puts the visitor in line
(with a place and a wait), resends are not doubled, the thread shows agents' replies by
name and never internal notes, read receipts, files, and no visitor sees another's."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.routing.conftest import go_available, running_router, wait_offer
from tests.webchat.conftest import open_session, start_chat


async def _assign(client: Any, tenant: dict[str, Any], clean_db: Any, cid: str, db_urls: Any):
    agent = tenant["agents"][0]
    await go_available(client, agent)
    contact = await clean_db.fetchval(
        "SELECT contact_id FROM conversations WHERE id = $1", uuid.UUID(cid)
    )
    async with running_router(db_urls):
        offer = await wait_offer(client, agent, str(contact))
        r = await client.post(f"/v1/reservations/{offer['id']}/accept", headers=agent["headers"])
        assert r.status_code == 200, r.text


async def test_a_first_message_puts_the_visitor_in_line(client, widget, clean_db):
    first = await open_session(client, widget)
    started = await start_chat(client, first, "Where is my order?")
    conv = started["conversation"]
    assert conv["state"] == "queued" and conv["position"] == 1 and conv["agent"] is None
    assert conv["estimated_wait_seconds"] is None  # nobody serves the queue yet
    assert started["message"]["body"] == "Where is my order?"
    assert started["message"]["direction"] == "inbound"

    # With an agent logged in (no router running here: nobody is offered the chat yet),
    # the wait is estimated: place x handle time (3 minutes by default) / agents.
    await go_available(client, widget["agents"][0])
    second = await open_session(client, widget)
    other = (await start_chat(client, second))["conversation"]
    assert other["position"] == 2 and other["estimated_wait_seconds"] == pytest.approx(360.0)
    r = await client.get(f"/v1/widget/conversations/{conv['id']}", headers=first["headers"])
    assert r.status_code == 200, r.text
    assert r.json()["position"] == 1
    assert r.json()["estimated_wait_seconds"] == pytest.approx(180.0)

    # The routed contact is the conversation's, on the channel's queue.
    row = await clean_db.fetchrow(
        "SELECT c.queue_id, c.channel, c.conversation_id FROM contacts c "
        "JOIN conversations v ON v.contact_id = c.id WHERE v.id = $1",
        uuid.UUID(conv["id"]),
    )
    assert str(row["queue_id"]) == widget["queue"]["id"] and row["channel"] == "chat"

    # Writing again continues the open chat (200), and a new session shows it.
    r = await client.post(
        "/v1/widget/conversations", json={"text": "Anyone?"}, headers=first["headers"]
    )
    assert r.status_code == 200, r.text
    assert r.json()["conversation"]["id"] == conv["id"]
    resumed = await open_session(client, widget, visitor_token=first["visitor_token"])
    assert resumed["conversation"]["id"] == conv["id"]


async def test_a_resent_message_is_not_doubled(client, widget, clean_db):
    visitor = await open_session(client, widget)
    r = await client.post(
        "/v1/widget/conversations",
        json={"text": "Hi", "client_message_id": "m-0"},
        headers=visitor["headers"],
    )
    assert r.status_code == 201, r.text
    cid = r.json()["conversation"]["id"]
    again = await client.post(
        "/v1/widget/conversations",
        json={"text": "Hi", "client_message_id": "m-0"},
        headers=visitor["headers"],
    )
    assert again.status_code == 200 and again.json()["message"]["id"] == r.json()["message"]["id"]

    url = f"/v1/widget/conversations/{cid}/messages"
    one = await client.post(
        url, json={"text": "?", "client_message_id": "m-1"}, headers=visitor["headers"]
    )
    two = await client.post(
        url, json={"text": "?", "client_message_id": "m-1"}, headers=visitor["headers"]
    )
    assert one.status_code == 201 and two.status_code == 200, two.text
    assert one.json()["duplicate"] is False and two.json()["duplicate"] is True
    assert two.json()["message"]["id"] == one.json()["message"]["id"]
    assert await clean_db.fetchval("SELECT count(*) FROM messages") == 2
    assert await clean_db.fetchval("SELECT count(*) FROM usage_events") == 2
    events = await clean_db.fetchval(
        "SELECT count(*) FROM conversation_events WHERE topic = 'message.created'"
    )
    assert events == 2


async def test_the_thread_shows_replies_by_name_and_never_notes(client, widget, clean_db, db_urls):
    visitor = await open_session(client, widget)
    cid = (await start_chat(client, visitor))["conversation"]["id"]
    await _assign(client, widget, clean_db, cid, db_urls)
    agent = widget["agents"][0]
    r = await client.get(f"/v1/widget/conversations/{cid}", headers=visitor["headers"])
    assert r.json()["state"] == "assigned" and r.json()["agent"] == {"display_name": "Agent 0"}
    assert r.json()["position"] is None

    r = await client.post(
        f"/v1/conversations/{cid}/messages",
        json={"text": "Happy to help"},
        headers=agent["headers"],
    )
    assert r.status_code == 201, r.text
    reply = r.json()["id"]
    r = await client.post(
        f"/v1/conversations/{cid}/notes",
        json={"text": "VIP, be nice"},
        headers=agent["headers"],
    )
    assert r.status_code == 201, r.text

    r = await client.get(f"/v1/widget/conversations/{cid}/messages", headers=visitor["headers"])
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [m["body"] for m in items] == ["Happy to help", "Hello, I need help"]  # newest first
    assert items[0]["agent_name"] == "Agent 0" and "agent_id" not in items[0]
    assert "VIP" not in r.text
    # Paging back with the cursor.
    r = await client.get(
        f"/v1/widget/conversations/{cid}/messages?limit=1", headers=visitor["headers"]
    )
    page = r.json()
    assert [m["body"] for m in page["items"]] == ["Happy to help"]
    r = await client.get(
        f"/v1/widget/conversations/{cid}/messages?limit=1&cursor={page['next_cursor']}",
        headers=visitor["headers"],
    )
    assert [m["body"] for m in r.json()["items"]] == ["Hello, I need help"]
    assert r.json()["next_cursor"] is None

    # Read receipt: the agent's message becomes read, once.
    url = f"/v1/widget/conversations/{cid}/read"
    r = await client.post(url, json={"message_id": reply}, headers=visitor["headers"])
    assert r.status_code == 200 and r.json() == {"marked_read": 1}
    r = await client.post(url, json={"message_id": reply}, headers=visitor["headers"])
    assert r.json() == {"marked_read": 0}
    row = await clean_db.fetchrow(
        "SELECT status, read_at FROM messages WHERE id = $1", uuid.UUID(reply)
    )
    assert row["status"] == "read" and row["read_at"] is not None
    statuses = await clean_db.fetch(
        "SELECT payload FROM conversation_events WHERE topic = 'message.status' AND audience = 'all'"
    )
    assert len(statuses) == 1
    r = await client.post(url, json={"message_id": str(uuid.uuid4())}, headers=visitor["headers"])
    assert r.status_code == 422 and r.json()["field"] == "body.message_id"


async def test_another_visitor_cannot_reach_the_conversation(client, widget):
    owner = await open_session(client, widget)
    cid = (await start_chat(client, owner))["conversation"]["id"]
    stranger = await open_session(client, widget)
    h = stranger["headers"]
    base = f"/v1/widget/conversations/{cid}"
    calls = [
        client.get(base, headers=h),
        client.get(base + "/messages", headers=h),
        client.post(base + "/messages", json={"text": "hi", "client_message_id": "x"}, headers=h),
        client.post(base + "/read", json={"message_id": str(uuid.uuid4())}, headers=h),
        client.post(
            base + "/attachments",
            json={"filename": "a.png", "content_type": "image/png", "size_bytes": 10},
            headers=h,
        ),
    ]
    for call in calls:
        r = await call
        assert r.status_code == 404, r.text
        assert r.json()["code"] == "conversation-not-found"


async def test_files_go_up_presigned_and_come_back_to_their_visitor(
    app, client, widget, clean_db, settings
):
    visitor = await open_session(client, widget)
    cid = (await start_chat(client, visitor))["conversation"]["id"]
    h = visitor["headers"]
    url = f"/v1/widget/conversations/{cid}/attachments"
    png = b"\x89PNG\r\n\x1a\n" + b"pixels" * 10
    r = await client.post(
        url,
        json={"filename": "receipt (1).png", "content_type": "image/png", "size_bytes": len(png)},
        headers=h,
    )
    assert r.status_code == 201, r.text
    grant = r.json()
    ticket = grant["upload"]
    assert ticket["method"] == "PUT" and ticket["max_bytes"] == len(png)

    # Naming it before it is uploaded is refused; upload it (the local store, via the API).
    post = f"/v1/widget/conversations/{cid}/messages"
    early = await client.post(
        post,
        json={"text": "", "client_message_id": "f-0", "attachment_ids": [grant["attachment_id"]]},
        headers=h,
    )
    assert early.status_code == 422 and early.json()["field"] == "body.attachment_ids.0"
    path = urlsplit(ticket["url"]).path
    too_big = await client.put(path, content=png + b"x", headers=ticket["headers"])
    assert too_big.status_code == 413, too_big.text
    up = await client.put(path, content=png, headers=ticket["headers"])
    assert up.status_code == 204, up.text

    r = await client.post(
        post,
        json={"text": "", "client_message_id": "f-1", "attachment_ids": [grant["attachment_id"]]},
        headers=h,
    )
    assert r.status_code == 201, r.text
    sent = r.json()["message"]["attachments"]
    assert sent == [
        {
            "attachment_id": grant["attachment_id"],
            "filename": "receipt (1).png",
            "content_type": "image/png",
            "size_bytes": len(png),
        }
    ]
    row = await clean_db.fetchrow(
        "SELECT status, message_id FROM attachments WHERE id = $1",
        uuid.UUID(grant["attachment_id"]),
    )
    assert row["status"] == "stored" and row["message_id"] is not None

    r = await client.get(f"/v1/widget/attachments/{grant['attachment_id']}", headers=h)
    assert r.status_code == 302, r.text
    download = await client.get(urlsplit(r.headers["location"]).path)
    assert download.status_code == 200 and download.content == png

    stranger = await open_session(client, widget)
    r = await client.get(
        f"/v1/widget/attachments/{grant['attachment_id']}", headers=stranger["headers"]
    )
    assert r.status_code == 404 and r.json()["code"] == "attachment-not-found"

    # Refused before anything is stored: too large, a type not accepted, a bad name.
    for body, field in (
        (
            {
                "filename": "a.mp4",
                "content_type": "video/mp4",
                "size_bytes": settings.attachment_max_bytes + 1,
            },
            "body.size_bytes",
        ),
        (
            {"filename": "a.exe", "content_type": "application/x-msdownload", "size_bytes": 10},
            "body.content_type",
        ),
        ({"filename": "..", "content_type": "image/png", "size_bytes": 10}, "body.filename"),
        ({"filename": "a.png", "content_type": "image/png", "size_bytes": 0}, "body.size_bytes"),
    ):
        r = await client.post(url, json=body, headers=h)
        assert r.status_code == 422, r.text
        assert r.json()["field"] == field
    assert await clean_db.fetchval("SELECT count(*) FROM attachments") == 1


async def test_bad_input_names_the_field(client, widget):
    visitor = await open_session(client, widget)
    h = visitor["headers"]
    for body, field in (
        ({"text": "x" * 5001}, "body.text"),
        ({"text": "   "}, "body.text"),
        ({"text": "a\x00b"}, "body.text"),
        ({"text": "hi", "extra": 1}, "body.extra"),
        ({"text": "hi", "client_message_id": "no spaces"}, "body.client_message_id"),
        ({}, "body.text"),
    ):
        r = await client.post("/v1/widget/conversations", json=body, headers=h)
        assert r.status_code == 422, (body, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["field"] == field, r.json()
