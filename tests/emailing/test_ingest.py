"""Inbound mail into conversations, on the real database: recipients resolved to their
tenant's channel, threads followed, duplicates ignored, auto-replies and loops dropped,
bounces recorded against the message they report on; and the whole path over SMTP."""

from __future__ import annotations

import asyncio
import smtplib
import uuid
from email.message import EmailMessage
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from app.config import Settings
from app.emailing.ingest import accepts, ingest
from app.emailing.parse import MailRejected
from app.emailing.smtp_server import InboundHandler, start_smtp_server
from tests.emailing.conftest import email_channel
from tests.routing.conftest import staffed_tenant

SAMPLES = Path(__file__).parent / "samples"


def customer_mail(to: str, **over: Any) -> bytes:
    msg = EmailMessage()
    msg["From"] = over.get("sender", "Jane Doe <Jane.Doe@customer.example>")
    msg["To"] = to
    msg["Subject"] = over.get("subject", "Where is my order?")
    msg["Message-ID"] = over.get("message_id", f"<{uuid.uuid4().hex}@mail.customer.example>")
    msg["Date"] = "Tue, 14 May 2024 10:00:00 +0000"
    for name in ("In-Reply-To", "References", "Auto-Submitted"):
        if name in over:
            msg[name] = over[name]
    msg.set_content(over.get("text", "Hello,\n\nmy order 1234 has not arrived.\n\nJane"))
    for filename, ctype, data in over.get("attachments", []):
        maintype, subtype = ctype.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes()


async def run_ingest(app: Any, settings: Settings, to: list[str], raw: bytes, sender: str = ""):  # type: ignore[no-untyped-def]
    return await ingest(
        app.state.session_factory,
        settings,
        app.state.object_store,
        sender or "jane.doe@customer.example",
        to,
        raw,
    )


async def test_accepts_only_enabled_channel_addresses(
    app: Any, client: httpx.AsyncClient, settings: Settings, mailbox: dict[str, Any]
) -> None:
    factory, address = app.state.session_factory, mailbox["address"]
    assert await accepts(factory, settings, address)
    assert await accepts(factory, settings, address.upper())
    assert not await accepts(factory, settings, "nobody@" + settings.inbound_email_domain)
    assert not await accepts(factory, settings, address.split("@")[0] + "@elsewhere.example")
    ch = mailbox["channel"]
    r = await client.patch(
        f"/v1/channels/{ch['id']}",
        json={"enabled": False},
        headers=mailbox["tenant"]["headers"] | {"If-Match": f'"{ch["version"]}"'},
    )
    assert r.status_code == 200, r.text
    assert not await accepts(factory, settings, address)


async def test_new_mail_opens_a_routed_conversation(
    app: Any, settings: Settings, clean_db: asyncpg.Connection, mailbox: dict[str, Any]
) -> None:
    raw = customer_mail(
        mailbox["address"],
        text="Hello,\n\nmy order 1234 has not arrived.\n\nJane",
        attachments=[("receipt.pdf", "application/pdf", b"%PDF-1.4 receipt")],
    )
    (delivery,) = await run_ingest(app, settings, [mailbox["address"].upper()], raw)
    assert delivery.outcome == "received"
    conv = await clean_db.fetchrow(
        "SELECT * FROM conversations WHERE id = $1", delivery.conversation_id
    )
    assert conv["state"] == "queued" and conv["channel"] == "email"
    assert conv["subject"] == "Where is my order?"
    msg = await clean_db.fetchrow("SELECT * FROM messages WHERE id = $1", delivery.message_id)
    assert msg["body"] == "Hello,\n\nmy order 1234 has not arrived.\n\nJane"
    assert msg["direction"] == "inbound" and msg["channel_id"] == uuid.UUID(
        mailbox["channel"]["id"]
    )
    assert msg["email_message_id"] == msg["provider_message_id"]
    assert msg["email_message_id"].endswith("@mail.customer.example>")
    identity = await clean_db.fetchrow(
        "SELECT * FROM customer_identities WHERE customer_id = $1", conv["customer_id"]
    )
    assert (identity["kind"], identity["value"]) == ("email", "jane.doe@customer.example")
    customer = await clean_db.fetchrow(
        "SELECT display_name FROM customers WHERE id = $1", conv["customer_id"]
    )
    assert customer["display_name"] == "Jane Doe"
    (attachment,) = await clean_db.fetch(
        "SELECT * FROM attachments WHERE message_id = $1", delivery.message_id
    )
    assert (attachment["filename"], attachment["content_type"], attachment["size_bytes"]) == (
        "receipt.pdf",
        "application/pdf",
        16,
    )
    assert await app.state.object_store.get(attachment["object_key"]) == b"%PDF-1.4 receipt"


async def test_a_reply_joins_its_thread_with_only_the_new_text(
    app: Any, settings: Settings, clean_db: asyncpg.Connection, mailbox: dict[str, Any]
) -> None:
    first_id = f"<{uuid.uuid4().hex}@mail.customer.example>"
    (first,) = await run_ingest(
        app, settings, [mailbox["address"]], customer_mail(mailbox["address"], message_id=first_id)
    )
    answer = customer_mail(
        mailbox["address"],
        subject="Re: Where is my order?",
        text="It arrived, thanks!\n\nOn Tue, Jane <jane.doe@customer.example> wrote:\n> my order",
        **{"In-Reply-To": first_id, "References": first_id},
    )
    (second,) = await run_ingest(app, settings, [mailbox["address"]], answer)
    assert second.outcome == "received"
    assert second.conversation_id == first.conversation_id
    msg = await clean_db.fetchrow("SELECT * FROM messages WHERE id = $1", second.message_id)
    assert msg["body"] == "It arrived, thanks!"
    assert msg["email_in_reply_to"] == first_id


async def test_the_same_mail_twice_is_stored_once(
    app: Any, settings: Settings, clean_db: asyncpg.Connection, mailbox: dict[str, Any]
) -> None:
    raw = customer_mail(mailbox["address"])
    (first,) = await run_ingest(app, settings, [mailbox["address"]], raw)
    (again,) = await run_ingest(app, settings, [mailbox["address"]], raw)
    assert again.outcome == "duplicate" and again.message_id == first.message_id
    # Without a Message-ID the bytes themselves identify the mail.
    no_id = raw.replace(b"Message-ID:", b"X-Old-Id:")
    (a,) = await run_ingest(app, settings, [mailbox["address"]], no_id)
    (b,) = await run_ingest(app, settings, [mailbox["address"]], no_id)
    assert (a.outcome, b.outcome) == ("received", "duplicate")
    count = await clean_db.fetchval(
        "SELECT count(*) FROM messages WHERE channel_id = $1",
        uuid.UUID(mailbox["channel"]["id"]),
    )
    assert count == 2


async def test_one_mail_to_two_tenants_reaches_each(
    app: Any,
    client: httpx.AsyncClient,
    settings: Settings,
    clean_db: asyncpg.Connection,
    mailbox: dict[str, Any],
) -> None:
    other = await staffed_tenant(client, agents=1)
    other_channel = await email_channel(client, other)
    to = [mailbox["address"], other_channel["config"]["address"], mailbox["address"]]
    deliveries = await run_ingest(app, settings, to, customer_mail(", ".join(to[:2])))
    assert [d.outcome for d in deliveries] == ["received", "received"]
    tenants = {
        r["tenant_id"]
        for r in await clean_db.fetch(
            "SELECT tenant_id FROM conversations WHERE id = ANY($1::uuid[])",
            [d.conversation_id for d in deliveries],
        )
    }
    assert tenants == {
        uuid.UUID(mailbox["tenant"]["tenant"]["id"]),
        uuid.UUID(other["tenant"]["id"]),
    }


async def test_auto_replies_and_loops_are_dropped(
    app: Any, settings: Settings, clean_db: asyncpg.Connection, mailbox: dict[str, Any]
) -> None:
    auto = customer_mail(mailbox["address"], **{"Auto-Submitted": "auto-replied"})
    assert [d.outcome for d in await run_ingest(app, settings, [mailbox["address"]], auto)] == [
        "auto-submitted"
    ]
    ours = customer_mail(mailbox["address"], sender=f"other@{settings.inbound_email_domain}")
    assert [d.outcome for d in await run_ingest(app, settings, [mailbox["address"]], ours)] == [
        "loop"
    ]
    assert await clean_db.fetchval("SELECT count(*) FROM messages") == 0


async def test_mail_without_a_sender_is_refused(
    app: Any, settings: Settings, mailbox: dict[str, Any]
) -> None:
    raw = customer_mail(mailbox["address"], sender="not an address")
    with pytest.raises(MailRejected, match="sender"):
        await ingest(
            app.state.session_factory,
            settings,
            app.state.object_store,
            "",
            [mailbox["address"]],
            raw,
        )
    # The envelope sender stands in for a missing From.
    (delivery,) = await run_ingest(
        app, settings, [mailbox["address"]], raw, sender="envelope@customer.example"
    )
    assert delivery.outcome == "received"


async def test_attachments_not_kept_are_named_in_the_text(
    app: Any, settings: Settings, clean_db: asyncpg.Connection, mailbox: dict[str, Any]
) -> None:
    raw = customer_mail(
        mailbox["address"],
        text="Files attached.",
        attachments=[
            ("tool.exe", "application/x-msdownload", b"MZ..."),
            ("photo.png", "image/png", b"\x89PNG"),
        ],
    )
    (delivery,) = await run_ingest(app, settings, [mailbox["address"]], raw)
    msg = await clean_db.fetchrow("SELECT * FROM messages WHERE id = $1", delivery.message_id)
    assert msg["body"].startswith("Files attached.")
    assert "tool.exe (content-type-not-allowed: application/x-msdownload)" in msg["body"]
    assert [a["filename"] for a in msg_attachments(msg)] == ["photo.png"]


def msg_attachments(msg: asyncpg.Record) -> list[dict[str, Any]]:
    import json

    value = msg["attachments"]
    return json.loads(value) if isinstance(value, str) else list(value)


async def _sent_reply(
    clean_db: asyncpg.Connection, conversation_id: uuid.UUID, provider_id: str, email_id: str
) -> uuid.UUID:
    """An outbound email as the dispatcher leaves it once the provider took it."""
    conv = await clean_db.fetchrow(
        "SELECT tenant_id, customer_id, channel_id FROM conversations WHERE id = $1",
        conversation_id,
    )
    mid = uuid.uuid4()
    await clean_db.execute(
        "INSERT INTO messages (tenant_id, id, conversation_id, customer_id, direction, "
        "sender_kind, channel, channel_id, body, attachments, status, to_address, "
        "provider_message_id, email_message_id, email_references, attempts, created_at, sent_at) "
        "VALUES ($1, $2, $3, $4, 'outbound', 'agent', 'email', $5, 'It ships tomorrow.', "
        "'[]'::jsonb, 'sent', 'jane.doe@customer.example', $6, $7, '[]'::jsonb, 1, now(), now())",
        conv["tenant_id"],
        mid,
        conversation_id,
        conv["customer_id"],
        conv["channel_id"],
        provider_id,
        email_id,
    )
    return mid


def bounce_for(original_id: str, recipient: str, status: str = "5.1.1") -> bytes:
    raw = (SAMPLES / "postfix_bounce.eml").read_bytes()
    raw = raw.replace(b"nobody@customer.example", recipient.encode())
    raw = raw.replace(b"Nobody@Customer.example", recipient.encode())
    raw = raw.replace(
        b"<6f1c2a9e0b3d4e5f8a7b6c5d4e3f2a1b@inbound.switchboard.localhost>", original_id.encode()
    )
    return raw.replace(b"Status: 5.1.1", f"Status: {status}".encode())


async def test_a_bounce_fails_the_message_and_marks_the_address(
    app: Any, settings: Settings, clean_db: asyncpg.Connection, mailbox: dict[str, Any]
) -> None:
    (first,) = await run_ingest(
        app, settings, [mailbox["address"]], customer_mail(mailbox["address"])
    )
    assert first.conversation_id is not None
    email_id = f"<{uuid.uuid4().hex}@{settings.inbound_email_domain}>"
    reply_id = await _sent_reply(clean_db, first.conversation_id, email_id, email_id)

    raw = bounce_for(email_id, "jane.doe@customer.example")
    (delivery,) = await ingest(
        app.state.session_factory, settings, app.state.object_store, "", [mailbox["address"]], raw
    )
    assert delivery.outcome == "bounce"
    msg = await clean_db.fetchrow("SELECT status, error FROM messages WHERE id = $1", reply_id)
    assert msg["status"] == "failed"
    assert msg["error"].startswith("550 5.1.1 <jane.doe@customer.example>")
    bounced = await clean_db.fetchval(
        "SELECT bounced_at FROM customer_identities WHERE value = 'jane.doe@customer.example'"
    )
    assert bounced is not None
    # The report itself is no customer message.
    assert await clean_db.fetchval("SELECT count(*) FROM messages WHERE direction = 'inbound'") == 1


async def test_a_forged_bounce_marks_no_one(
    app: Any, settings: Settings, clean_db: asyncpg.Connection, mailbox: dict[str, Any]
) -> None:
    await run_ingest(app, settings, [mailbox["address"]], customer_mail(mailbox["address"]))
    raw = bounce_for(
        f"<{uuid.uuid4().hex}@{settings.inbound_email_domain}>", "jane.doe@customer.example"
    )
    (delivery,) = await ingest(
        app.state.session_factory, settings, app.state.object_store, "", [mailbox["address"]], raw
    )
    assert delivery.outcome == "bounce"
    assert (
        await clean_db.fetchval(
            "SELECT bounced_at FROM customer_identities WHERE value = 'jane.doe@customer.example'"
        )
        is None
    )


async def test_ses_bounce_and_a_transient_failure(
    app: Any, settings: Settings, clean_db: asyncpg.Connection, mailbox: dict[str, Any]
) -> None:
    (first,) = await run_ingest(
        app, settings, [mailbox["address"]], customer_mail(mailbox["address"])
    )
    assert first.conversation_id is not None
    ses_id = f"0100018f{uuid.uuid4().hex}-000000"
    reply_id = await _sent_reply(
        clean_db, first.conversation_id, ses_id, f"<{uuid.uuid4().hex}@x.example>"
    )
    # SES replaced our Message-ID with its own: the report quotes that one.
    raw = bounce_for(f"<{ses_id}@email.amazonses.com>", "jane.doe@customer.example", "4.2.2")
    await ingest(
        app.state.session_factory, settings, app.state.object_store, "", [mailbox["address"]], raw
    )
    assert (
        await clean_db.fetchval("SELECT status FROM messages WHERE id = $1", reply_id) == "failed"
    )
    # 4.x.x: the message failed, but the address is not known to be bad.
    assert (
        await clean_db.fetchval(
            "SELECT bounced_at FROM customer_identities WHERE value = 'jane.doe@customer.example'"
        )
        is None
    )


async def test_over_smtp_end_to_end(
    app: Any, settings: Settings, clean_db: asyncpg.Connection, mailbox: dict[str, Any]
) -> None:
    factory = app.state.session_factory
    handler = InboundHandler(
        accepts=partial(accepts, factory, settings),
        deliver=partial(ingest, factory, settings, app.state.object_store),
        domain=settings.inbound_email_domain,
        max_recipients=settings.smtp_max_recipients,
    )
    server = await start_smtp_server(
        "127.0.0.1", 0, handler, data_size_limit=settings.smtp_max_message_bytes
    )
    address = mailbox["address"]
    raw = customer_mail(address, text="Sent over SMTP.")

    def send() -> tuple[dict[str, Any], tuple[int, bytes]]:
        with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as smtp:
            refused = smtp.sendmail("jane.doe@customer.example", [address], raw)
            smtp.mail("jane.doe@customer.example")
            unknown = smtp.rcpt(f"nobody-{uuid.uuid4().hex[:6]}@{settings.inbound_email_domain}")
            smtp.rset()
            return refused, unknown

    try:
        refused, unknown = await asyncio.to_thread(send)
    finally:
        await server.close()
    assert refused == {}
    assert unknown[0] == 550
    body = await clean_db.fetchval(
        "SELECT body FROM messages WHERE channel_id = $1", uuid.UUID(mailbox["channel"]["id"])
    )
    assert body == "Sent over SMTP."
