"""Security review of outbound email (findings turned into tests).

A customer's subject is the reply's subject. Header values must stay on one line, and
Python's email package counts more than CR and LF as line breaks (NEL, LINE SEPARATOR,
PARAGRAPH SEPARATOR, VT, FF, FS, GS, RS): a subject holding one must neither break out
of its header nor make every agent reply in the thread fail to go out."""

from __future__ import annotations

import base64
import email
from email import policy
from typing import Any

import asyncpg
import pytest

from app.emailing.compose import POLICY, compose_reply
from tests.emailing.test_ingest import customer_mail, run_ingest
from tests.emailing.test_outbound_sender import _reply, mailer_of

BREAKS = ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


@pytest.mark.parametrize("brk", BREAKS)
@pytest.mark.parametrize("where", ["subject", "display_name"])
def test_a_line_break_of_any_kind_stays_inside_its_header(brk: str, where: str) -> None:
    values = {"subject": "Where is my order?", "display_name": "Acme Support"}
    values[where] = f"Hello{brk}Bcc: victim@elsewhere.example"

    _, msg = compose_reply(
        from_address="support@acme.example",
        to="jane@customer.example",
        text="It ships today.",
        message_id_domain="acme.example",
        in_reply_to=None,
        references=[],
        **values,
    )

    raw = msg.as_bytes(policy=POLICY)
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert parsed["Bcc"] is None
    assert not [line for line in raw.split(b"\r\n") if line.lower().startswith(b"bcc")]
    header = "Subject" if where == "subject" else "From"
    assert "Bcc: victim@elsewhere.example" in str(parsed[header])


async def test_a_customer_subject_with_a_line_separator_does_not_block_replies(
    app: Any, settings: Any, clean_db: asyncpg.Connection, mailbox: dict[str, Any]
) -> None:
    # The customer's client encodes the subject (RFC 2047): U+2028 survives decoding.
    words = "Order 1234\u2028Bcc: victim@elsewhere.example".encode()
    subject = f"=?utf-8?b?{base64.b64encode(words).decode()}?="
    [got] = await run_ingest(
        app, settings, [mailbox["address"]], customer_mail(mailbox["address"], subject=subject)
    )
    assert got.outcome == "received"

    msg, status = await _reply(app, mailbox["tenant"], got.conversation_id, "It ships today.")

    assert status == "sent"
    _, to, sent = mailer_of(app).sent[-1]
    assert to == ["jane.doe@customer.example"]
    assert sent["Bcc"] is None
    assert sent["Subject"] == "Re: Order 1234 Bcc: victim@elsewhere.example"
    row = await clean_db.fetchrow("SELECT status, error FROM messages WHERE id = $1", msg.id)
    assert row["status"] == "sent", row["error"]
