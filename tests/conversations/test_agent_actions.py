"""Agents on conversations over REST: accepting an offer assigns the conversation,
the owner replies (on web chat, or switching to email with threading headers), notes stay
among agents, resolve takes the queue's wrap-up codes, pending waits for the customer,
and who may do what (403 not a participant, 404 another tenant's, 422 naming the field).
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from app.conversations import delivery
from tests.conftest import create_tenant, create_user, login
from tests.conversations.desk import (
    conversation,
    customer_writes,
    email_channel,
    post,
    problem_of,
    take,
    tenant_sql,
    topics,
    webchat_channel,
    worker,  # noqa: F401 - the fixture
)
from tests.routing.conftest import staffed_tenant, wait_for

pytestmark = pytest.mark.usefixtures("worker")

CODES = ["Resolved", "Refund issued"]


async def assigned_chat(
    app: Any, client: httpx.AsyncClient, **queue: Any
) -> tuple[dict[str, Any], uuid.UUID, dict[str, Any]]:
    """A tenant whose customer wrote on web chat and whose first agent accepted it."""
    t = await staffed_tenant(client, agents=2, queue={"wrap_up_codes": CODES} | queue)
    chat = await webchat_channel(client, t, t["queue"]["id"])
    got = await customer_writes(app, t, chat)
    t["chat"] = chat
    await take(client, t["agents"][0])
    return t, got.conversation_id, t["agents"][0]


async def test_accepting_the_offer_assigns_the_conversation_to_the_agent(
    app: Any, client: httpx.AsyncClient, clean_db: asyncpg.Connection
) -> None:
    t, cid, ana = await assigned_chat(app, client)

    conv = await conversation(client, ana, cid)
    assert conv["state"] == "assigned" and conv["agent_id"] == ana["id"]
    owners = [p for p in conv["participants"] if p["role"] == "owner"]
    assert [(p["agent_id"], p["state"], p["name"]) for p in owners] == [
        (ana["id"], "active", "Agent 0")
    ]
    # The customer is told who joined: the display name, never an email address.
    joined = await clean_db.fetchrow(
        "SELECT audience, payload FROM conversation_events "
        "WHERE conversation_id = $1 AND topic = 'agent.joined'",
        cid,
    )
    assert joined["audience"] == "all"
    assert '"name": "Agent 0"' in joined["payload"] and "@" not in joined["payload"]
    timeline = await clean_db.fetchval(
        "SELECT count(*) FROM timeline_events WHERE conversation_id = $1 "
        "AND kind = 'conversation.assigned'",
        cid,
    )
    assert timeline == 1

    # Listing: the agent's own conversations; mine=true those they are in now.
    r = await client.get("/v1/conversations?mine=true", headers=ana["headers"])
    assert [c["id"] for c in r.json()["items"]] == [str(cid)]
    other = t["agents"][1]
    r = await client.get("/v1/conversations", headers=other["headers"])
    assert r.status_code == 200 and r.json()["items"] == []
    # An agent who takes no part reads nothing of it.
    for path in ("", "/messages", "/events", "/context"):
        r = await client.get(f"/v1/conversations/{cid}{path}", headers=other["headers"])
        assert problem_of(r, 403)["code"] == "not-a-participant", path
    # The tenant's staff read all of them.
    r = await client.get("/v1/conversations?state=assigned", headers=t["headers"])
    assert [c["id"] for c in r.json()["items"]] == [str(cid)]


async def test_the_owner_replies_on_web_chat_and_switches_to_email(
    app: Any, client: httpx.AsyncClient, clean_db: asyncpg.Connection
) -> None:
    t, cid, ana = await assigned_chat(app, client)
    r = await client.post(
        f"/v1/conversations/{cid}/messages",
        json={"text": "Sorry about that!\nLet me check."},
        headers=ana["headers"],
    )
    assert r.status_code == 201, r.text
    sent = r.json()
    assert (sent["direction"], sent["status"], sent["channel"]) == ("outbound", "sent", "webchat")
    assert sent["agent_id"] == ana["id"]

    mail = await email_channel(client, t)
    # No email address on the profile yet: the field says why.
    r = await client.post(
        f"/v1/conversations/{cid}/messages",
        json={"text": "Details by mail", "channel_id": mail["id"]},
        headers=ana["headers"],
    )
    problem = problem_of(r, 422)
    assert (problem["code"], problem["field"]) == ("no-address-for-channel", "body.channel_id")

    customer_id = (await conversation(client, ana, cid))["customer_id"]
    await tenant_sql(
        app,
        t,
        "INSERT INTO customer_identities (tenant_id, id, customer_id, kind, value, verified, "
        "created_at, last_seen_at) VALUES ($1, $2, $3, 'email', 'carla@example.com', true, "
        "now(), now())",
        uuid.UUID(t["tenant"]["id"]),
        uuid.uuid4(),
        uuid.UUID(customer_id),
    )
    first = await client.post(
        f"/v1/conversations/{cid}/messages",
        json={"text": "The invoice, as promised.", "channel_id": mail["id"]},
        headers=post(ana, **{"Idempotency-Key": "reply-1"}),
    )
    assert first.status_code == 201, first.text
    assert (first.json()["channel"], first.json()["status"]) == ("email", "queued")
    again = await client.post(
        f"/v1/conversations/{cid}/messages",
        json={"text": "The invoice, as promised.", "channel_id": mail["id"]},
        headers=post(ana, **{"Idempotency-Key": "reply-1"}),
    )
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    # Later replies stay on email by default, threaded under the first.
    second = await client.post(
        f"/v1/conversations/{cid}/messages", json={"text": "Anything else?"}, headers=ana["headers"]
    )
    assert second.status_code == 201 and second.json()["channel"] == "email"
    await delivery.drain()
    rows = await clean_db.fetch(
        "SELECT id, to_address, email_message_id, email_in_reply_to, email_references, subject "
        "FROM messages WHERE conversation_id = $1 AND channel = 'email' ORDER BY created_at",
        cid,
    )
    assert [str(r["id"]) for r in rows] == [first.json()["id"], second.json()["id"]]
    one, two = rows
    assert one["to_address"] == "carla@example.com"
    assert one["email_message_id"].startswith("<") and one["email_in_reply_to"] is None
    assert one["subject"]
    assert two["email_in_reply_to"] == one["email_message_id"]
    assert one["email_message_id"] in two["email_references"]
    conv = await conversation(client, ana, cid)
    assert (conv["channel"], conv["channel_id"]) == ("email", mail["id"])
    # Each reply is one message on the usage ledger, per channel.
    meters = await clean_db.fetch(
        "SELECT meter, count(*) AS n FROM usage_events WHERE meter LIKE 'messages.%' "
        "GROUP BY meter ORDER BY meter"
    )
    assert [(m["meter"], m["n"]) for m in meters] == [
        ("messages.email", 2),
        ("messages.webchat", 2),
    ]


async def test_notes_stay_among_agents(
    app: Any, client: httpx.AsyncClient, clean_db: asyncpg.Connection
) -> None:
    t, cid, ana = await assigned_chat(app, client)
    r = await client.post(
        f"/v1/conversations/{cid}/notes",
        json={"text": "VIP: refund without asking twice"},
        headers=ana["headers"],
    )
    assert r.status_code == 201, r.text
    note = r.json()
    assert (note["direction"], note["sender_kind"]) == ("internal", "agent")

    # The customer's stream reads audience "all": the note is not there.
    visible = await clean_db.fetch(
        "SELECT payload FROM conversation_events WHERE conversation_id = $1 AND audience = 'all'",
        cid,
    )
    assert visible and all("VIP" not in v["payload"] for v in visible)
    hidden = await clean_db.fetch(
        "SELECT topic FROM conversation_events WHERE conversation_id = $1 "
        "AND audience = 'agents' AND payload::text LIKE '%VIP%'",
        cid,
    )
    assert [h["topic"] for h in hidden] == ["message.created"]
    assert (
        await clean_db.fetchval(
            "SELECT count(*) FROM timeline_events WHERE conversation_id = $1 AND kind = 'note'",
            cid,
        )
        == 1
    )
    # Agents read it with the messages, oldest first; not billed as a message.
    r = await client.get(f"/v1/conversations/{cid}/messages", headers=ana["headers"])
    assert [m["direction"] for m in r.json()["items"]] == ["inbound", "internal"]
    assert (
        await clean_db.fetchval("SELECT count(*) FROM usage_events WHERE meter LIKE 'messages.%'")
        == 1
    )
    # Tenant admins write notes too (not replies: only the owning agent does).
    r = await client.post(
        f"/v1/conversations/{cid}/notes", json={"text": "Approved."}, headers=t["headers"]
    )
    assert r.status_code == 201 and r.json()["sender_kind"] == "system"
    # Pages of messages, oldest first, follow the cursor.
    seen, cursor = [], None
    while True:
        query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        r = await client.get(f"/v1/conversations/{cid}/messages{query}", headers=ana["headers"])
        seen += [m["body"] for m in r.json()["items"]]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == [
        "Hello, my order 4711 never arrived",
        "VIP: refund without asking twice",
        "Approved.",
    ]
    r = await client.post(
        f"/v1/conversations/{cid}/messages", json={"text": "Hi"}, headers=t["headers"]
    )
    assert problem_of(r, 403)["code"] == "agent-only"


async def test_resolve_takes_a_wrap_up_code_and_ends_the_work(
    app: Any, client: httpx.AsyncClient, clean_db: asyncpg.Connection
) -> None:
    _t, cid, ana = await assigned_chat(app, client)
    conv = await conversation(client, ana, cid)

    r = await client.post(
        f"/v1/conversations/{cid}/resolve",
        json={"wrap_up_code": "Escalated"},
        headers=ana["headers"],
    )
    problem = problem_of(r, 422)
    assert problem["field"] == "body.wrap_up_code" and "Refund issued" in problem["detail"]
    r = await client.post(
        f"/v1/conversations/{cid}/resolve",
        json={"wrap_up_code": "refund ISSUED"},
        headers=post(ana, **{"If-Match": '"1"'}),
    )
    assert problem_of(r, 412)["field"] == "header.If-Match"

    r = await client.post(
        f"/v1/conversations/{cid}/resolve",
        json={"wrap_up_code": "refund ISSUED"},
        headers=post(ana, **{"If-Match": f'"{conv["version"]}"'}),
    )
    assert r.status_code == 200, r.text
    done = r.json()
    assert (done["state"], done["wrap_up_code"]) == ("resolved", "Refund issued")
    assert done["resolved_at"] is not None and r.headers["ETag"] == f'"{done["version"]}"'
    assert all(p["state"] == "left" for p in done["participants"] if p["kind"] == "agent")

    work = await clean_db.fetchrow(
        "SELECT r.state, c.state AS contact_state, c.wrap_up_code FROM reservations r "
        "JOIN contacts c ON c.tenant_id = r.tenant_id AND c.id = r.contact_id "
        "WHERE c.conversation_id = $1",
        cid,
    )
    assert tuple(work) == ("completed", "completed", "Refund issued")
    used = await clean_db.fetchval(
        "SELECT used_points FROM agent_presence WHERE agent_id = $1", uuid.UUID(ana["id"])
    )
    assert used == 0
    handled = await clean_db.fetchrow(
        "SELECT attributes FROM usage_events WHERE meter = 'handled_minutes.chat'"
    )
    assert f'"conversation_id": "{cid}"' in handled["attributes"]
    kinds = await clean_db.fetch(
        "SELECT kind FROM timeline_events WHERE conversation_id = $1 ORDER BY at, id", cid
    )
    # Both at the moment of resolving (same timestamp: no order between them).
    assert sorted(k["kind"] for k in kinds[-2:]) == ["conversation.resolved", "disposition"]
    assert (await topics(clean_db, cid, "all"))[-1] == "conversation.resolved"

    # A resolved conversation takes no reply until it is reopened.
    r = await client.post(
        f"/v1/conversations/{cid}/messages", json={"text": "One more thing"}, headers=ana["headers"]
    )
    assert problem_of(r, 409)["code"] == "conversation-resolved"
    r = await client.post(f"/v1/conversations/{cid}/resolve", headers=ana["headers"])
    assert problem_of(r, 409)["code"] == "conversation-resolved"
    # Reopening routes it again, to the same agent first.
    r = await client.post(f"/v1/conversations/{cid}/reopen", headers=ana["headers"])
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "queued"
    contact = await clean_db.fetchrow(
        "SELECT preferred_agent_ids, sticky_agent_id FROM contacts WHERE id = $1",
        uuid.UUID(r.json()["contact_id"]),
    )
    assert contact["preferred_agent_ids"] == [uuid.UUID(ana["id"])]
    assert contact["sticky_agent_id"] == uuid.UUID(ana["id"])
    await take(client, ana, r.json()["contact_id"])
    r = await client.post(
        f"/v1/conversations/{cid}/messages", json={"text": "One more thing"}, headers=ana["headers"]
    )
    assert r.status_code == 201, r.text


async def test_pending_waits_for_the_customer_who_routes_it_again(
    app: Any, client: httpx.AsyncClient, clean_db: asyncpg.Connection
) -> None:
    t, cid, ana = await assigned_chat(app, client)
    r = await client.post(f"/v1/conversations/{cid}/pending", headers=ana["headers"])
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "pending_customer"
    state = await clean_db.fetchval(
        "SELECT r.state FROM reservations r JOIN contacts c ON c.id = r.contact_id "
        "WHERE c.conversation_id = $1",
        cid,
    )
    assert state == "wrap_up"  # the queue's wrap-up follows, as for any completed work
    # Still readable by the agent who handled it, no longer theirs to write to.
    r = await client.post(
        f"/v1/conversations/{cid}/notes", json={"text": "waiting"}, headers=ana["headers"]
    )
    assert problem_of(r, 403)["code"] == "not-a-participant"

    again = await customer_writes(app, t, t["chat"], "Here is the photo you asked for")
    assert again.conversation_id == cid
    conv = await conversation(client, ana, cid)
    assert conv["state"] == "queued"


async def test_completing_the_reservation_sets_the_conversation_pending(
    app: Any, client: httpx.AsyncClient, clean_db: asyncpg.Connection
) -> None:
    t, cid, ana = await assigned_chat(app, client)
    reservation = await clean_db.fetchval(
        "SELECT id FROM reservations WHERE agent_id = $1", uuid.UUID(ana["id"])
    )
    r = await client.post(f"/v1/reservations/{reservation}/complete", headers=ana["headers"])
    assert r.status_code == 200, r.text
    conv = await conversation(client, t, cid)
    assert conv["state"] == "pending_customer"
    assert [p["state"] for p in conv["participants"] if p["kind"] == "agent"] == ["left"]
    handled = await clean_db.fetchval(
        "SELECT attributes FROM usage_events WHERE meter = 'handled_minutes.chat'"
    )
    assert f'"conversation_id": "{cid}"' in handled


async def test_another_tenants_conversation_is_not_found(
    app: Any, client: httpx.AsyncClient
) -> None:
    _t, cid, _ana = await assigned_chat(app, client)
    other = await create_tenant(client, company_name="Other Co")
    stranger = await create_user(app, other, "admin")
    h = (await login(client, stranger["email"]))["headers"]
    for method, path, body in (
        ("GET", "", None),
        ("GET", "/messages", None),
        ("GET", "/context", None),
        ("POST", "/notes", {"text": "hi"}),
        ("POST", "/resolve", {}),
        ("POST", "/monitor", None),
    ):
        r = await client.request(method, f"/v1/conversations/{cid}{path}", json=body, headers=h)
        assert problem_of(r, 404)["code"] == "conversation-not-found", path
    r = await client.get("/v1/conversations", headers=h)
    assert r.json()["items"] == []


async def test_hostile_inputs_name_the_field(app: Any, client: httpx.AsyncClient) -> None:
    t, cid, ana = await assigned_chat(app, client)
    base = f"/v1/conversations/{cid}"
    cases: list[tuple[str, Any, str]] = [
        ("/messages", {"text": ""}, "body.text"),
        ("/messages", {"text": "x" * 10_001}, "body.text"),
        ("/messages", {"text": "nul \x00 here"}, "body.text"),
        ("/messages", {"text": "   \n  "}, "body.text"),
        ("/messages", {"text": "hi", "channel_id": "not-a-uuid"}, "body.channel_id"),
        ("/messages", {"text": "hi", "channel_id": str(uuid.uuid4())}, "body.channel_id"),
        ("/messages", {"text": "hi", "extra": 1}, "body.extra"),
        (
            "/messages",
            {"text": "hi", "attachment_ids": [str(uuid.uuid4())]},
            "body.attachment_ids.0",
        ),
        ("/notes", {"text": 42}, "body.text"),
        ("/transfer", {"mode": "cold"}, "body.queue_id"),
        ("/transfer", {"queue_id": str(uuid.uuid4()), "agent_id": ana["id"]}, "body.queue_id"),
        ("/transfer", {"queue_id": t["queue"]["id"], "mode": "lukewarm"}, "body.mode"),
        ("/transfer", {"queue_id": str(uuid.uuid4())}, "body.queue_id"),
        ("/transfer", {"agent_id": ana["id"]}, "body.agent_id"),
        ("/transfer", {"agent_id": str(uuid.uuid4())}, "body.agent_id"),
        ("/transfer", {"queue_id": t["queue"]["id"], "note": "n" * 2001}, "body.note"),
        ("/consult", {"agent_id": str(uuid.uuid4())}, "body.agent_id"),
        ("/resolve", {"wrap_up_code": "c" * 65}, "body.wrap_up_code"),
        ("/typing", {"typing": "yes"}, "body.typing"),
    ]
    for path, body, field in cases:
        r = await client.post(base + path, json=body, headers=ana["headers"])
        problem = problem_of(r, 422)
        assert problem["field"] == field, (path, body, problem)
    r = await client.get(f"{base}/messages?cursor=nope", headers=ana["headers"])
    assert problem_of(r, 422)["field"] == "query.cursor"
    r = await client.get(f"{base}/events?since=-1", headers=ana["headers"])
    assert problem_of(r, 422)["field"] == "query.since"
    r = await client.get("/v1/conversations/not-a-uuid", headers=ana["headers"])
    assert problem_of(r, 422)["field"] == "path.conversation_id"
    r = await client.post(
        f"{base}/messages", json={"text": "hi"}, headers=post(ana, **{"Idempotency-Key": "a b"})
    )
    assert problem_of(r, 422)["field"] == "header.Idempotency-Key"
    # Nothing above was written.
    r = await client.get(f"{base}/messages", headers=ana["headers"])
    assert [m["direction"] for m in r.json()["items"]] == ["inbound"]


async def test_events_page_by_id_and_context_reads_the_customer(
    app: Any, client: httpx.AsyncClient, clean_db: asyncpg.Connection
) -> None:
    _t, cid, ana = await assigned_chat(app, client)
    r = await client.get(f"/v1/conversations/{cid}/events", headers=ana["headers"])
    events = r.json()
    assert [e["topic"] for e in events["items"]][:2] == ["message.created", "conversation.queued"]
    latest = events["latest_event_id"]
    r = await client.get(f"/v1/conversations/{cid}/events?since={latest}", headers=ana["headers"])
    assert r.json() == {"items": [], "latest_event_id": latest}
    await client.post(
        f"/v1/conversations/{cid}/typing", json={"typing": True}, headers=ana["headers"]
    )
    r = await client.get(f"/v1/conversations/{cid}/events?since={latest}", headers=ana["headers"])
    (typing,) = r.json()["items"]
    assert (typing["topic"], typing["audience"], typing["payload"]["name"]) == (
        "typing",
        "all",
        "Agent 0",
    )
    # A second "typing" within two seconds is dropped.
    r = await client.post(
        f"/v1/conversations/{cid}/typing", json={"typing": True}, headers=ana["headers"]
    )
    assert r.json() == {"sent": False}

    r = await client.get(f"/v1/conversations/{cid}/context", headers=ana["headers"])
    ctx = r.json()
    assert ctx["customer"]["display_name"] == "Carla Customer"
    assert ctx["customer"]["identities"][0]["kind"] == "webchat"
    assert [m["body"] for m in ctx["messages"]] == ["Hello, my order 4711 never arrived"]
    assert next(i["kind"] for i in ctx["recent_interactions"]) == "conversation.assigned"


async def test_an_admin_monitoring_is_read_only(
    app: Any, client: httpx.AsyncClient, clean_db: asyncpg.Connection
) -> None:
    t, cid, ana = await assigned_chat(app, client)
    admin = await create_user(app, t, "admin")
    admin |= await login(client, admin["email"])
    supervisor = await create_user(app, t, "supervisor")
    supervisor |= await login(client, supervisor["email"])

    r = await client.post(f"/v1/conversations/{cid}/monitor", headers=admin["headers"])
    assert r.status_code == 200, r.text
    watching = [p for p in r.json()["participants"] if p["role"] == "monitor"]
    assert [(p["kind"], p["user_id"], p["state"]) for p in watching] == [
        ("supervisor", admin["id"], "active")
    ]
    for path, body in (
        ("/notes", {"text": "hi"}),
        ("/messages", {"text": "hi"}),
        ("/transfer", {"queue_id": t["queue"]["id"]}),
        ("/resolve", {}),
        ("/pending", None),
    ):
        r = await client.post(f"/v1/conversations/{cid}{path}", json=body, headers=admin["headers"])
        assert problem_of(r, 403)["code"] == "read-only-participant", path
    # A supervisor may watch, never write.
    r = await client.post(f"/v1/conversations/{cid}/monitor", headers=supervisor["headers"])
    assert r.status_code == 200, r.text
    r = await client.post(
        f"/v1/conversations/{cid}/notes", json={"text": "hi"}, headers=supervisor["headers"]
    )
    assert problem_of(r, 403)["code"] == "insufficient-scope"
    # The monitors get the conversation's events on their desktop stream (outbox).
    await client.post(
        f"/v1/conversations/{cid}/messages", json={"text": "Checking"}, headers=ana["headers"]
    )

    async def delivered() -> bool:
        n = await clean_db.fetchval(
            "SELECT count(*) FROM outbox_events WHERE agent_id = ANY($1::uuid[]) "
            "AND topic = 'conversation.message.created'",
            [uuid.UUID(admin["id"]), uuid.UUID(supervisor["id"])],
        )
        return n == 2

    await wait_for(delivered)
    r = await client.delete(f"/v1/conversations/{cid}/monitor", headers=admin["headers"])
    assert r.status_code == 200
    r = await client.post(
        f"/v1/conversations/{cid}/notes", json={"text": "Approved"}, headers=admin["headers"]
    )
    assert r.status_code == 201, r.text
    # An agent cannot monitor.
    r = await client.post(f"/v1/conversations/{cid}/monitor", headers=ana["headers"])
    assert problem_of(r, 403)["code"] == "insufficient-scope"


async def test_the_owner_sends_a_file_that_readers_download(
    app: Any, client: httpx.AsyncClient, clean_db: asyncpg.Connection
) -> None:
    t, cid, ana = await assigned_chat(app, client)
    pdf = b"%PDF-1.4\n% an invoice\n"
    r = await client.post(
        f"/v1/conversations/{cid}/uploads",
        json={"filename": "invoice 4711.pdf", "content_type": "application/pdf", "size_bytes": 999},
        headers=ana["headers"],
    )
    assert r.status_code == 201, r.text
    grant = r.json()
    r = await client.post(
        f"/v1/conversations/{cid}/uploads",
        json={"filename": "x.exe", "content_type": "application/x-msdownload", "size_bytes": 9},
        headers=ana["headers"],
    )
    assert problem_of(r, 422)["field"] == "body.content_type"
    # Naming it before it arrived is refused; upload it (local store, via the API).
    reply = {"text": "Your invoice", "attachment_ids": [grant["attachment_id"]]}
    r = await client.post(f"/v1/conversations/{cid}/messages", json=reply, headers=ana["headers"])
    assert problem_of(r, 422)["field"] == "body.attachment_ids.0"
    ticket = grant["upload"]
    up = await client.put(urlsplit(ticket["url"]).path, content=pdf, headers=ticket["headers"])
    assert up.status_code == 204, up.text
    r = await client.post(f"/v1/conversations/{cid}/messages", json=reply, headers=ana["headers"])
    assert r.status_code == 201, r.text
    (sent,) = r.json()["attachments"]
    assert (sent["filename"], sent["size_bytes"]) == ("invoice 4711.pdf", len(pdf))

    r = await client.get(
        f"/v1/conversations/{cid}/attachments/{grant['attachment_id']}", headers=t["headers"]
    )
    assert r.status_code == 302, r.text
    got = await client.get(
        urlsplit(r.headers["location"]).path + "?" + urlsplit(r.headers["location"]).query
    )
    assert got.status_code == 200 and got.content == pdf
    # Another agent, not taking part, cannot fetch it.
    r = await client.get(
        f"/v1/conversations/{cid}/attachments/{grant['attachment_id']}",
        headers=t["agents"][1]["headers"],
    )
    assert problem_of(r, 403)["code"] == "not-a-participant"
    r = await client.get(
        f"/v1/conversations/{cid}/attachments/{uuid.uuid4()}", headers=ana["headers"]
    )
    assert problem_of(r, 404)["code"] == "attachment-not-found"
