"""A sent file is sealed: its presigned upload URL stays valid for a while after the
message took the file, and writing the key again through it must not change what the
conversation shows as sent. The download (the visitor's and staff's) answers 409
``attachment-changed`` instead of serving the replacement, and an outbound reply that
carries a replaced file fails rather than sending it."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest

from app.conversations.uploads import AttachmentChanged, check_unchanged
from tests.webchat.conftest import open_session, start_chat

PNG = b"\x89PNG\r\n\x1a\n" + b"pixels" * 10
SWAPPED = b"\x89PNG\r\n\x1a\n" + b"PIXELS" * 10  # same type and size, other bytes


async def _send_file(client: Any, visitor: dict[str, Any], cid: str) -> dict[str, Any]:
    r = await client.post(
        f"/v1/widget/conversations/{cid}/attachments",
        json={"filename": "receipt.png", "content_type": "image/png", "size_bytes": len(PNG)},
        headers=visitor["headers"],
    )
    assert r.status_code == 201, r.text
    grant: dict[str, Any] = r.json()
    ticket = grant["upload"]
    up = await client.put(urlsplit(ticket["url"]).path, content=PNG, headers=ticket["headers"])
    assert up.status_code == 204, up.text
    r = await client.post(
        f"/v1/widget/conversations/{cid}/messages",
        json={"text": "", "client_message_id": "s-1", "attachment_ids": [grant["attachment_id"]]},
        headers=visitor["headers"],
    )
    assert r.status_code == 201, r.text
    return grant


async def test_a_file_replaced_after_it_was_sent_is_not_served(app, client, widget, clean_db):
    visitor = await open_session(client, widget)
    cid = (await start_chat(client, visitor))["conversation"]["id"]
    grant = await _send_file(client, visitor, cid)
    aid = grant["attachment_id"]
    row = await clean_db.fetchrow(
        "SELECT object_key, etag FROM attachments WHERE id = $1", uuid.UUID(aid)
    )
    store = app.state.object_store
    info = await store.head(row["object_key"])
    assert row["etag"] == info.etag  # sealed with what the message took

    # Until the file is touched, the visitor and staff both get it.
    visitor_url = f"/v1/widget/attachments/{aid}"
    staff_url = f"/v1/conversations/{cid}/attachments/{aid}"
    r = await client.get(visitor_url, headers=visitor["headers"])
    assert r.status_code == 302, r.text
    r = await client.get(staff_url, headers=widget["headers"])
    assert r.status_code == 302, r.text

    # The upload URL has not expired: the visitor writes other bytes through it.
    ticket = grant["upload"]
    again = await client.put(
        urlsplit(ticket["url"]).path, content=SWAPPED, headers=ticket["headers"]
    )
    assert again.status_code == 204, again.text
    assert await store.get(row["object_key"]) == SWAPPED

    for url, headers in ((visitor_url, visitor["headers"]), (staff_url, widget["headers"])):
        r = await client.get(url, headers=headers)
        assert r.status_code == 409, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["code"] == "attachment-changed"
        assert "location" not in r.headers

    # Removed altogether: refused the same way, never a dangling link.
    await store.delete(row["object_key"])
    r = await client.get(visitor_url, headers=visitor["headers"])
    assert r.status_code == 409 and r.json()["code"] == "attachment-changed"


async def test_the_check_passes_what_the_server_stored_itself(app, client, widget):
    store = app.state.object_store
    key = f"tenants/{uuid.uuid4()}/conversations/{uuid.uuid4()}/{uuid.uuid4()}/a.png"
    await store.put(key, PNG, "image/png")
    info = await store.head(key)
    await check_unchanged(store, key, None)  # inbound media and email: no seal
    await check_unchanged(store, key, info.etag)
    await store.put(key, SWAPPED, "image/png")
    with pytest.raises(AttachmentChanged) as raised:
        await check_unchanged(store, key, info.etag)
    assert raised.value.status == 409 and raised.value.code == "attachment-changed"
