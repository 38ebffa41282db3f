"""Agents' email replies: threaded under the customer's mail, sent From the channel's
reply address with Reply-To its inbound address, and the customer's answer to the reply
comes back into the same conversation."""

from __future__ import annotations

import email
import uuid
from email import policy
from typing import Any

import asyncpg

from app.conversations import delivery, outbound
from app.db.tenant import bind_tenant, mint_scope
from app.emailing.outbound import mailer
from app.emailing.senders import DevChannelMailer
from tests.emailing.test_ingest import customer_mail, run_ingest


async def _reply(app: Any, tenant: dict[str, Any], conversation_id: uuid.UUID, text: str) -> Any:
    scope = mint_scope(uuid.UUID(tenant["tenant"]["id"]))
    async with app.state.session_factory() as session, session.begin():
        await bind_tenant(session, scope)
        msg = await outbound.send_message(
            session,
            scope,
            conversation_id=conversation_id,
            text=text,
            sender_kind="agent",
            agent_id=None,
            store=app.state.object_store,
            settings=app.state.settings,
            factory=None,
        )
    status = await delivery.deliver_one(
        app.state.session_factory,
        app.state.settings,
        app.state.object_store,
        scope.tenant_id,
        msg.id,
    )
    return msg, status


async def test_a_reply_threads_and_the_answer_comes_back(
    app: Any, settings: Any, clean_db: asyncpg.Connection, mailbox: dict[str, Any]
) -> None:
    first = customer_mail(mailbox["address"], message_id="<q1@mail.customer.example>")
    [got] = await run_ingest(app, settings, [mailbox["address"]], first)
    assert got.outcome == "received"

    msg, status = await _reply(app, mailbox["tenant"], got.conversation_id, "It ships today.")
    assert status == "sent"
    dev = mailer_of(app)
    from_addr, to, sent = dev.sent[-1]
    assert from_addr == mailbox["address"]  # reply_from defaults to the inbound address
    assert to == ["jane.doe@customer.example"]
    assert sent["In-Reply-To"] == "<q1@mail.customer.example>"
    assert sent["References"] == "<q1@mail.customer.example>"
    assert sent["Subject"] == "Re: Where is my order?"
    assert sent["Reply-To"] == mailbox["address"]
    row = await clean_db.fetchrow(
        "SELECT status, email_message_id, provider_message_id FROM messages WHERE id = $1",
        msg.id,
    )
    assert row["status"] == "sent"
    assert sent["Message-ID"] == row["email_message_id"]

    # The customer answers the reply: same conversation.
    answer = customer_mail(
        mailbox["address"],
        subject="Re: Where is my order?",
        message_id="<q2@mail.customer.example>",
        **{
            "In-Reply-To": row["email_message_id"],
            "References": f"<q1@mail.customer.example> {row['email_message_id']}",
        },
        text="Thanks!\n\nOn Tue, Support wrote:\n> It ships today.",
    )
    [back] = await run_ingest(app, settings, [mailbox["address"]], answer)
    assert back.conversation_id == got.conversation_id
    parsed = email.message_from_bytes(sent.as_bytes(), policy=policy.default)
    assert "It ships today." in parsed.get_body(("plain",)).get_content()  # type: ignore[union-attr]


async def test_a_bounced_address_is_refused_for_replies(
    app: Any, settings: Any, clean_db: asyncpg.Connection, mailbox: dict[str, Any]
) -> None:
    [got] = await run_ingest(app, settings, [mailbox["address"]], customer_mail(mailbox["address"]))
    await clean_db.execute("UPDATE customer_identities SET bounced_at = now() WHERE kind = 'email'")
    scope = mint_scope(uuid.UUID(mailbox["tenant"]["tenant"]["id"]))
    async with app.state.session_factory() as session, session.begin():
        await bind_tenant(session, scope)
        try:
            await outbound.send_message(
                session,
                scope,
                conversation_id=got.conversation_id,
                text="hello?",
                sender_kind="agent",
                agent_id=None,
                store=app.state.object_store,
                settings=app.state.settings,
                factory=None,
            )
        except Exception as exc:
            assert getattr(exc, "code", None) == "address-bounced"
        else:
            raise AssertionError("a reply to a bouncing address was queued")


def mailer_of(app: Any) -> DevChannelMailer:
    class _Ctx:
        settings = app.state.settings

    found = mailer(_Ctx())  # type: ignore[arg-type]
    assert isinstance(found, DevChannelMailer)
    return found


async def test_a_receipt_that_beats_the_send_is_applied_by_it(
    app: Any, settings: Any, clean_db: asyncpg.Connection, mailbox: dict[str, Any]
) -> None:
    """Providers call back fast: a 'delivered' receipt can arrive before the send that
    learns the provider's id has committed. It is kept and applied then, not lost."""
    from app.conversations.receipts import update_delivery
    from app.db.base import utcnow

    [got] = await run_ingest(app, settings, [mailbox["address"]], customer_mail(mailbox["address"]))
    scope = mint_scope(uuid.UUID(mailbox["tenant"]["tenant"]["id"]))
    async with app.state.session_factory() as session, session.begin():
        await bind_tenant(session, scope)
        msg = await outbound.send_message(
            session,
            scope,
            conversation_id=got.conversation_id,
            text="On its way.",
            sender_kind="agent",
            agent_id=None,
            store=app.state.object_store,
            settings=app.state.settings,
            factory=None,
        )
    mail_id = await clean_db.fetchval("SELECT email_message_id FROM messages WHERE id = $1", msg.id)
    async with app.state.session_factory() as session, session.begin():
        await bind_tenant(session, scope)
        early = await update_delivery(
            session,
            scope,
            channel_id=uuid.UUID(mailbox["channel"]["id"]),
            provider_message_id=mail_id,
            status="delivered",
            at=utcnow(),
        )
    assert early is False
    status = await delivery.deliver_one(
        app.state.session_factory,
        app.state.settings,
        app.state.object_store,
        scope.tenant_id,
        msg.id,
    )
    assert status == "sent"
    row = await clean_db.fetchrow("SELECT status, delivered_at FROM messages WHERE id = $1", msg.id)
    assert row["status"] == "delivered" and row["delivered_at"] is not None
    assert await clean_db.fetchval("SELECT count(*) FROM webhook_receipts") == 0
