"""A widget message goes only into the visitor's own conversation, and resends sent at
once still make one message: the conversation is checked (its owner and the visitor's
identity) and locked while the visitor is authenticated, before the duplicate check."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from tests.webchat.conftest import open_session, start_chat


async def _customer_of(clean_db: Any, conversation_id: str) -> uuid.UUID:
    customer: uuid.UUID = await clean_db.fetchval(
        "SELECT customer_id FROM conversations WHERE id = $1", uuid.UUID(conversation_id)
    )
    return customer


async def test_resends_sent_at_once_make_one_message(client, widget, clean_db):
    visitor = await open_session(client, widget)
    cid = (await start_chat(client, visitor))["conversation"]["id"]
    url = f"/v1/widget/conversations/{cid}/messages"
    # A few rounds (within the visitor's message limit): the race needs the requests
    # to overlap, which one round does not always make them do.
    for n in range(3):
        body = {"text": "Is anyone there?", "client_message_id": f"tap-{n}"}
        answers = await asyncio.gather(
            *(client.post(url, json=body, headers=visitor["headers"]) for _ in range(8))
        )
        assert sorted(r.status_code for r in answers) == [200] * 7 + [201], [
            r.text for r in answers
        ]
        assert len({r.json()["message"]["id"] for r in answers}) == 1
        assert [r.json()["duplicate"] for r in answers if r.status_code == 200] == [True] * 7
    count = await clean_db.fetchval(
        "SELECT count(*) FROM messages WHERE client_message_id LIKE 'tap-%'"
    )
    assert count == 3
    usage = await clean_db.fetchval("SELECT count(*) FROM usage_events")
    assert usage == 4  # the first message and one per round


async def test_a_resend_into_another_visitors_conversation_is_not_found(client, widget, clean_db):
    owner = await open_session(client, widget)
    cid = (await start_chat(client, owner))["conversation"]["id"]
    url = f"/v1/widget/conversations/{cid}/messages"
    sent = {"text": "My card ends in 4242", "client_message_id": "m-1"}
    r = await client.post(url, json=sent, headers=owner["headers"])
    assert r.status_code == 201, r.text

    # The same client id from someone else: not the owner's message, not a new one.
    stranger = await open_session(client, widget)
    r = await client.post(url, json=sent, headers=stranger["headers"])
    assert r.status_code == 404, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "conversation-not-found"
    assert "4242" not in r.text
    assert await clean_db.fetchval("SELECT count(*) FROM messages") == 2


async def test_a_merged_profile_does_not_open_its_other_visitors_chats(client, widget, clean_db):
    """Two browsers, one person: after the merge both visitors belong to one profile,
    but each still writes only into the chats opened from its own browser."""
    first = await open_session(client, widget)
    second = await open_session(client, widget)
    first_cid = (await start_chat(client, first, "from the laptop"))["conversation"]["id"]
    second_cid = (await start_chat(client, second, "from the phone"))["conversation"]["id"]
    kept, absorbed = (
        await _customer_of(clean_db, first_cid),
        await _customer_of(clean_db, second_cid),
    )
    r = await client.post(
        f"/v1/customers/{kept}/merge",
        json={"customer_id": str(absorbed)},
        headers=widget["headers"],
    )
    assert r.status_code == 200, r.text
    assert await _customer_of(clean_db, second_cid) == kept

    r = await client.post(
        f"/v1/widget/conversations/{first_cid}/messages",
        json={"text": "hello from the phone", "client_message_id": "p-1"},
        headers=second["headers"],
    )
    assert r.status_code == 404, r.text
    assert r.json()["code"] == "conversation-not-found"
    r = await client.post(
        f"/v1/widget/conversations/{second_cid}/messages",
        json={"text": "still the phone", "client_message_id": "p-2"},
        headers=second["headers"],
    )
    assert r.status_code == 201, r.text
    assert r.json()["message"]["conversation_id"] == second_cid
    bodies = await clean_db.fetch(
        "SELECT body FROM messages WHERE conversation_id = $1 ORDER BY id",
        uuid.UUID(first_cid),
    )
    assert [b["body"] for b in bodies] == ["from the laptop"]
