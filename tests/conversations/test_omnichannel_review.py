"""Security review of the agent desk (regression tests of what was checked and holds).

Another tenant's conversation answers 404 on every route the older test does not name
(events, uploads, typing, transfer, consult, pending, reopen, attachments), and an
attachment id of another tenant (or of another conversation) cannot be named in a reply:
``attachment_ids`` are looked up in the replying conversation only."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import create_user, login
from tests.conversations.desk import problem_of
from tests.conversations.desk import worker as worker  # the fixture
from tests.conversations.test_agent_actions import assigned_chat

pytestmark = pytest.mark.usefixtures("worker")


async def _sent_file(client: httpx.AsyncClient, cid: Any, agent: dict[str, Any]) -> str:
    """A file the owning agent sent in the conversation; its attachment id."""
    r = await client.post(
        f"/v1/conversations/{cid}/uploads",
        json={"filename": "invoice.pdf", "content_type": "application/pdf", "size_bytes": 99},
        headers=agent["headers"],
    )
    assert r.status_code == 201, r.text
    grant = r.json()
    ticket = grant["upload"]
    up = await client.put(
        urlsplit(ticket["url"]).path, content=b"%PDF-1.4\n%\n", headers=ticket["headers"]
    )
    assert up.status_code == 204, up.text
    reply = {"text": "Your invoice", "attachment_ids": [grant["attachment_id"]]}
    r = await client.post(f"/v1/conversations/{cid}/messages", json=reply, headers=agent["headers"])
    assert r.status_code == 201, r.text
    return str(grant["attachment_id"])


async def test_another_tenant_reaches_nothing_of_a_conversation(
    app: Any, client: httpx.AsyncClient
) -> None:
    t1, cid, ana = await assigned_chat(app, client)
    attachment = await _sent_file(client, cid, ana)
    t2, other_cid, bob = await assigned_chat(app, client)
    admin = await create_user(app, t2, "admin")
    h = (await login(client, admin["email"]))["headers"]
    upload = {"filename": "a.pdf", "content_type": "application/pdf", "size_bytes": 9}
    for method, path, body in (
        ("GET", "/events", None),
        ("GET", f"/attachments/{attachment}", None),
        ("POST", "/uploads", upload),
        ("POST", "/typing", {"typing": True}),
        ("POST", "/transfer", {"queue_id": t2["queue"]["id"]}),
        ("DELETE", "/transfer", None),
        ("POST", "/consult", {"agent_id": bob["id"]}),
        ("POST", "/pending", {}),
        ("POST", "/reopen", {}),
        ("POST", "/messages", {"text": "hello from elsewhere"}),
    ):
        r = await client.request(method, f"/v1/conversations/{cid}{path}", json=body, headers=h)
        assert problem_of(r, 404)["code"] == "conversation-not-found", (method, path)

    # Tenant 2's owning agent names tenant 1's attachment in a reply of its own.
    reply = {"text": "look at this", "attachment_ids": [attachment]}
    r = await client.post(
        f"/v1/conversations/{other_cid}/messages", json=reply, headers=bob["headers"]
    )
    assert problem_of(r, 422)["field"] == "body.attachment_ids.0"
    r = await client.get(
        f"/v1/conversations/{other_cid}/attachments/{attachment}", headers=bob["headers"]
    )
    assert problem_of(r, 404)["code"] == "attachment-not-found"
    # Tenant 1 still has it, untouched.
    r = await client.get(f"/v1/conversations/{cid}/attachments/{attachment}", headers=t1["headers"])
    assert r.status_code == 302, r.text
