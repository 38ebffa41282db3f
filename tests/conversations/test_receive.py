"""The conversation core: an inbound message finds or opens its conversation, is
stored once, metered, put on the timeline, announced, and routed when nobody holds it."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from app.conversations.receipts import update_delivery
from app.conversations.service import (
    AttachmentIn,
    ChannelRef,
    EmailMeta,
    InboundContent,
    Received,
    receive,
)
from app.customers.service import resolve_identity
from app.db.base import utcnow
from app.db.tenant import bind_tenant, mint_scope
from tests.routing.conftest import staffed_tenant


async def _channel(client, tenant, body: dict[str, Any]) -> dict[str, Any]:
    r = await client.post("/v1/channels", json=body, headers=tenant["headers"])
    assert r.status_code == 201, r.text
    return r.json()


async def _webchat(client, tenant) -> dict[str, Any]:
    return await _channel(
        client,
        tenant,
        {
            "type": "webchat",
            "name": f"Chat {uuid.uuid4().hex[:6]}",
            "config": {"allowed_origins": ["https://shop.example.com"]},
        },
    )


async def _receive(
    app, tenant, channel: ChannelRef, kind: str, value: str, content: InboundContent, **kw: Any
) -> Received:
    scope = mint_scope(uuid.UUID(tenant["tenant"]["id"]))
    async with app.state.session_factory() as session, session.begin():
        await bind_tenant(session, scope)
        who = await resolve_identity(session, scope, kind, value)
        return await receive(
            session,
            scope,
            "starter",
            channel=channel,
            identity=who,
            content=content,
            store=app.state.object_store,
            **kw,
        )


async def _rows(conn: asyncpg.Connection, sql: str, *args: Any) -> list[asyncpg.Record]:
    return list(await conn.fetch(sql, *args))


async def test_first_message_opens_a_routed_conversation(app, client, clean_db):
    t = await staffed_tenant(client, agents=1)
    ch = await _webchat(client, t)
    ref = ChannelRef(uuid.UUID(ch["id"]), "webchat", {"queue_id": t["queue"]["id"]})

    first = await _receive(app, t, ref, "webchat", "v_visitor000001", InboundContent(text="Hi"))
    assert first.opened and not first.duplicate
    conv = await clean_db.fetchrow(
        "SELECT * FROM conversations WHERE id = $1", first.conversation_id
    )
    assert conv["state"] == "queued" and conv["contact_id"] is not None
    contact = await clean_db.fetchrow("SELECT * FROM contacts WHERE id = $1", conv["contact_id"])
    assert contact["conversation_id"] == first.conversation_id
    assert contact["channel"] == "chat" and contact["customer_ref"] == str(conv["customer_id"])

    # A second message joins the same conversation and does not queue it twice.
    second = await _receive(app, t, ref, "webchat", "v_visitor000001", InboundContent(text="?"))
    assert second.conversation_id == first.conversation_id and not second.opened
    contacts = await _rows(
        clean_db, "SELECT id FROM contacts WHERE conversation_id = $1", first.conversation_id
    )
    assert len(contacts) == 1

    usage = await _rows(clean_db, "SELECT meter, attributes FROM usage_events ORDER BY recorded_at")
    assert [u["meter"] for u in usage] == ["messages.webchat", "messages.webchat"]
    kinds = [
        r["kind"]
        for r in await _rows(
            clean_db,
            "SELECT kind FROM timeline_events WHERE customer_id = $1 ORDER BY at, id",
            conv["customer_id"],
        )
    ]
    assert kinds == [
        "customer.created",
        "conversation.opened",
        "message.received",
        "message.received",
    ]
    topics = [
        r["topic"]
        for r in await _rows(
            clean_db,
            "SELECT topic FROM conversation_events WHERE conversation_id = $1 ORDER BY id",
            first.conversation_id,
        )
    ]
    assert topics == ["message.created", "conversation.queued", "message.created"]


async def test_a_replayed_provider_message_changes_nothing(app, client, clean_db):
    t = await staffed_tenant(client, agents=1)
    ch = await _webchat(client, t)
    ref = ChannelRef(uuid.UUID(ch["id"]), "webchat", {"queue_id": t["queue"]["id"]})
    content = InboundContent(text="once", provider_message_id="SM123")
    a = await _receive(app, t, ref, "webchat", "v_visitor000002", content)
    b = await _receive(app, t, ref, "webchat", "v_visitor000002", content)
    assert b.duplicate and b.message_id == a.message_id
    assert await clean_db.fetchval("SELECT count(*) FROM messages") == 1
    assert await clean_db.fetchval("SELECT count(*) FROM usage_events") == 1


async def test_email_replies_thread_by_message_id(app, client, clean_db):
    t = await staffed_tenant(client, agents=1)
    local = f"help-{uuid.uuid4().hex[:6]}"
    ch = await _channel(
        client, t, {"type": "email", "name": "Mail", "config": {"local_part": local}}
    )
    ref = ChannelRef(uuid.UUID(ch["id"]), "email", {"queue_id": t["queue"]["id"]})
    one = await _receive(
        app,
        t,
        ref,
        "email",
        "Jane@Example.com",
        InboundContent(
            text="My order",
            email=EmailMeta(message_id="<a@mail.example>", in_reply_to=None, subject="Order 7"),
        ),
    )
    two = await _receive(
        app,
        t,
        ref,
        "email",
        "jane@example.com",
        InboundContent(
            text="Any news?",
            email=EmailMeta(
                message_id="<b@mail.example>",
                in_reply_to="<a@mail.example>",
                references=["<a@mail.example>"],
            ),
        ),
    )
    assert two.conversation_id == one.conversation_id
    subject = await clean_db.fetchval(
        "SELECT subject FROM conversations WHERE id = $1", one.conversation_id
    )
    assert subject == "Order 7"
    # A new thread (no references) from the same customer opens its own conversation
    # only once the first is resolved; before that it joins the open one.
    await clean_db.execute(
        "UPDATE conversations SET state = 'resolved' WHERE id = $1", one.conversation_id
    )
    three = await _receive(
        app,
        t,
        ref,
        "email",
        "jane@example.com",
        InboundContent(
            text="Something else",
            email=EmailMeta(message_id="<c@mail.example>", in_reply_to=None, subject="New"),
        ),
    )
    assert three.opened and three.conversation_id != one.conversation_id


async def test_a_reply_to_a_resolved_conversation_reopens_it(app, client, clean_db):
    t = await staffed_tenant(client, agents=1)
    ch = await _webchat(client, t)
    ref = ChannelRef(uuid.UUID(ch["id"]), "webchat", {"queue_id": t["queue"]["id"]})
    first = await _receive(app, t, ref, "webchat", "v_visitor000003", InboundContent(text="a"))
    await clean_db.execute(
        "UPDATE conversations SET state = 'resolved' WHERE id = $1", first.conversation_id
    )
    again = await _receive(
        app,
        t,
        ref,
        "webchat",
        "v_visitor000003",
        InboundContent(text="b"),
        conversation_id=first.conversation_id,
    )
    assert again.conversation_id == first.conversation_id
    conv = await clean_db.fetchrow(
        "SELECT state FROM conversations WHERE id = $1", first.conversation_id
    )
    assert conv["state"] == "queued"
    assert (
        await clean_db.fetchval(
            "SELECT count(*) FROM timeline_events WHERE kind = 'conversation.reopened'"
        )
        == 1
    )


async def test_a_channel_without_a_queue_keeps_the_conversation_open_with_the_reason(
    app, client, clean_db
):
    t = await staffed_tenant(client, agents=1)
    ch = await _webchat(client, t)
    ref = ChannelRef(uuid.UUID(ch["id"]), "webchat", {})
    got = await _receive(app, t, ref, "webchat", "v_visitor000004", InboundContent(text="hi"))
    conv = await clean_db.fetchrow(
        "SELECT state, attributes FROM conversations WHERE id = $1", got.conversation_id
    )
    assert conv["state"] == "open"
    assert "no queue" in conv["attributes"]
    assert await clean_db.fetchval("SELECT count(*) FROM messages") == 1


async def test_attachments_go_to_object_storage_under_the_tenant(app, client, clean_db):
    t = await staffed_tenant(client, agents=1)
    ch = await _webchat(client, t)
    ref = ChannelRef(uuid.UUID(ch["id"]), "webchat", {"queue_id": t["queue"]["id"]})
    got = await _receive(
        app,
        t,
        ref,
        "webchat",
        "v_visitor000005",
        InboundContent(
            text="see attached",
            attachments=[AttachmentIn("receipt.pdf", "application/pdf", b"%PDF-1.4 test")],
        ),
    )
    row = await clean_db.fetchrow(
        "SELECT object_key, size_bytes, status FROM attachments WHERE message_id = $1",
        got.message_id,
    )
    assert row["object_key"].startswith(f"tenants/{t['tenant']['id']}/")
    assert row["size_bytes"] == 13 and row["status"] == "stored"
    assert await app.state.object_store.get(row["object_key"]) == b"%PDF-1.4 test"


async def test_delivery_receipts_only_move_forward(app, client, clean_db):
    t = await staffed_tenant(client, agents=1)
    ch = await _webchat(client, t)
    ref = ChannelRef(uuid.UUID(ch["id"]), "webchat", {"queue_id": t["queue"]["id"]})
    got = await _receive(app, t, ref, "webchat", "v_visitor000006", InboundContent(text="x"))
    await clean_db.execute(
        "UPDATE messages SET direction = 'outbound', status = 'sent', provider_message_id = 'P1' "
        "WHERE id = $1",
        got.message_id,
    )
    scope = mint_scope(uuid.UUID(t["tenant"]["id"]))

    async def receipt(status: str) -> bool:
        async with app.state.session_factory() as session, session.begin():
            await bind_tenant(session, scope)
            return await update_delivery(
                session,
                scope,
                channel_id=ref.id,
                provider_message_id="P1",
                status=status,
                at=utcnow(),
            )

    assert await receipt("read")
    assert not await receipt("delivered")  # late and older: ignored
    assert not await receipt("failed")
    row = await clean_db.fetchrow(
        "SELECT status, read_at FROM messages WHERE id = $1", got.message_id
    )
    assert row["status"] == "read" and row["read_at"] is not None
