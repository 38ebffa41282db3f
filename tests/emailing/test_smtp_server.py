"""The inbound SMTP server over a real socket, spoken to by smtplib (in a thread)."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from app.emailing.parse import MailRejected
from app.emailing.smtp_server import InboundHandler, InboundSmtpServer, start_smtp_server

DOMAIN = "inbound.switchboard.localhost"
KNOWN = {f"support@{DOMAIN}", f"sales@{DOMAIN}", f"a@{DOMAIN}", f"b@{DOMAIN}", f"c@{DOMAIN}"}
MESSAGE = (
    b"From: Jane <jane@customer.example>\r\nTo: support@" + DOMAIN.encode() + b"\r\n"
    b"Subject: Hello\r\nMessage-ID: <m1@customer.example>\r\n\r\n"
    b"Line one\r\n.A line that starts with a dot\r\n\r\nBye\r\n"
)


@dataclass
class Inbox:
    delivered: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    fail_with: Exception | None = None
    lookup_fails: bool = False

    async def accepts(self, address: str) -> bool:
        if self.lookup_fails:
            raise ConnectionError("database unavailable")
        return address in KNOWN

    async def deliver(self, mail_from: str, rcpt_tos: list[str], raw: bytes) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.delivered.append((mail_from, rcpt_tos, raw))


@pytest.fixture
async def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
async def server(inbox: Inbox) -> AsyncIterator[InboundSmtpServer]:
    handler = InboundHandler(
        accepts=inbox.accepts, deliver=inbox.deliver, domain=DOMAIN.upper(), max_recipients=3
    )
    srv = await start_smtp_server("127.0.0.1", 0, handler, data_size_limit=4096)
    try:
        yield srv
    finally:
        await srv.close()


async def talk(server: InboundSmtpServer, dialogue: Callable[[smtplib.SMTP], Any]) -> Any:
    def run() -> Any:
        with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as smtp:
            smtp.ehlo("sender.example")
            return dialogue(smtp)

    return await asyncio.to_thread(run)


async def test_delivers_the_raw_bytes(server: InboundSmtpServer, inbox: Inbox) -> None:
    refused = await talk(
        server,
        lambda s: s.sendmail("jane@customer.example", [f"Support@{DOMAIN}"], MESSAGE),
    )
    assert refused == {}
    ((mail_from, rcpt_tos, raw),) = inbox.delivered
    assert mail_from == "jane@customer.example"
    assert rcpt_tos == [f"support@{DOMAIN}"]  # matched and passed on lower case
    assert raw == MESSAGE  # dot-stuffing undone, nothing else changed


async def test_success_reply_code(server: InboundSmtpServer) -> None:
    def dialogue(s: smtplib.SMTP) -> tuple[int, bytes]:
        s.mail("jane@customer.example")
        s.rcpt(f"support@{DOMAIN}")
        return s.data(MESSAGE)

    code, text = await talk(server, dialogue)
    assert (code, text) == (250, b"2.0.0 Message queued")


async def test_unknown_recipient_is_refused(server: InboundSmtpServer, inbox: Inbox) -> None:
    def dialogue(s: smtplib.SMTP) -> tuple[tuple[int, bytes], tuple[int, bytes]]:
        s.mail("jane@customer.example")
        return s.rcpt(f"nobody@{DOMAIN}"), s.rcpt(f"sales@{DOMAIN}")

    unknown, known = await talk(server, dialogue)
    assert unknown == (550, f"5.1.1 <nobody@{DOMAIN}>: recipient address rejected".encode())
    assert known[0] == 250


async def test_relaying_is_refused(server: InboundSmtpServer, inbox: Inbox) -> None:
    def dialogue(s: smtplib.SMTP) -> tuple[int, bytes]:
        s.mail("spammer@bad.example")
        return s.rcpt("victim@elsewhere.example")

    code, text = await talk(server, dialogue)
    assert code == 550 and text.startswith(b"5.7.1 <victim@elsewhere.example>")
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        await talk(
            server,
            lambda s: s.sendmail("x@bad.example", [f"support@{DOMAIN}.evil.example"], MESSAGE),
        )
    assert inbox.delivered == []


async def test_too_many_recipients(server: InboundSmtpServer, inbox: Inbox) -> None:
    def dialogue(s: smtplib.SMTP) -> list[tuple[int, bytes]]:
        s.mail("jane@customer.example")
        answers = [s.rcpt(f"{name}@{DOMAIN}") for name in ("a", "b", "A", "c", "support")]
        s.data(MESSAGE)
        return answers

    answers = await talk(server, dialogue)
    assert [code for code, _ in answers] == [250, 250, 250, 250, 452]
    assert answers[4][1] == b"4.5.3 Too many recipients"
    # "A" repeats "a": one recipient, delivered once.
    assert inbox.delivered[0][1] == [f"a@{DOMAIN}", f"b@{DOMAIN}", f"c@{DOMAIN}"]


async def test_oversize_messages_are_refused(server: InboundSmtpServer, inbox: Inbox) -> None:
    big = MESSAGE + (b"x" * 70 + b"\r\n") * 80

    def announced(s: smtplib.SMTP) -> tuple[int, bytes]:
        return s.mail("jane@customer.example", ["SIZE=5000"])

    code, _ = await talk(server, announced)
    assert code == 552

    def unannounced(s: smtplib.SMTP) -> tuple[int, bytes]:
        s.mail("jane@customer.example")
        s.rcpt(f"support@{DOMAIN}")
        return s.data(big)

    code, _ = await talk(server, unannounced)
    assert code == 552
    assert inbox.delivered == []


async def test_delivery_failure_is_temporary(
    server: InboundSmtpServer, inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    inbox.fail_with = RuntimeError("database down")

    def dialogue(s: smtplib.SMTP) -> tuple[int, bytes]:
        s.mail("jane@customer.example")
        s.rcpt(f"support@{DOMAIN}")
        return s.data(MESSAGE)

    code, text = await talk(server, dialogue)
    assert (code, text[:5]) == (451, b"4.3.0")
    assert "delivery failed" in caplog.text
    assert "Line one" not in caplog.text  # the body stays out of the log
    inbox.fail_with = None
    code, _ = await talk(server, dialogue)  # the sender's retry gets through
    assert code == 250 and len(inbox.delivered) == 1


async def test_refused_mail_is_permanent(server: InboundSmtpServer, inbox: Inbox) -> None:
    inbox.fail_with = MailRejected("the MIME structure is nested too deeply")

    def dialogue(s: smtplib.SMTP) -> tuple[int, bytes]:
        s.mail("jane@customer.example")
        s.rcpt(f"support@{DOMAIN}")
        return s.data(MESSAGE)

    code, text = await talk(server, dialogue)
    assert code == 554 and b"nested too deeply" in text


async def test_lookup_failure_defers_the_recipient(server: InboundSmtpServer, inbox: Inbox) -> None:
    inbox.lookup_fails = True

    def dialogue(s: smtplib.SMTP) -> tuple[int, bytes]:
        s.mail("jane@customer.example")
        return s.rcpt(f"support@{DOMAIN}")

    code, _ = await talk(server, dialogue)
    assert code == 451


async def test_null_sender_of_bounces(server: InboundSmtpServer, inbox: Inbox) -> None:
    await talk(server, lambda s: s.sendmail("<>", [f"support@{DOMAIN}"], MESSAGE))
    assert inbox.delivered[0][0] == ""


async def test_data_needs_an_accepted_recipient(server: InboundSmtpServer, inbox: Inbox) -> None:
    def dialogue(s: smtplib.SMTP) -> tuple[int, bytes]:
        s.mail("jane@customer.example")
        s.rcpt(f"nobody@{DOMAIN}")
        return s.data(MESSAGE)

    with pytest.raises(smtplib.SMTPDataError) as err:
        await talk(server, dialogue)
    assert err.value.smtp_code == 503
    assert inbox.delivered == []
