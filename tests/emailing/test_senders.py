"""Outbound channel mail: SMTP against a local aiosmtpd server, SES against moto."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from app.config import Settings
from app.emailing.compose import compose_reply
from app.emailing.parse import parse_mail
from app.emailing.senders import (
    ChannelSendFailed,
    DevChannelMailer,
    SesChannelMailer,
    SmtpChannelMailer,
    channel_mailer_for,
)
from app.emailing.smtp_server import InboundSmtpServer, start_smtp_server
from tests.moto_s3 import REGION, aws_client, start_moto

DOMAIN = "inbound.switchboard.localhost"
FROM = f"support@{DOMAIN}"


def a_reply(to: str = "jane@customer.example") -> tuple[str, EmailMessage]:
    return compose_reply(
        from_address=FROM,
        display_name="Acme Support",
        to=to,
        subject="Where is my order? — n° 42",
        text="It ships tomorrow. Grüße!",
        message_id_domain=DOMAIN,
        in_reply_to="<c1@customer.example>",
        references=["<c0@customer.example>"],
        attachments=[("label.pdf", "application/pdf", b"%PDF-1.4 label")],
        reply_to=None,
    )


# -- SMTP ---------------------------------------------------------------------------------


@dataclass
class Relay:
    """A relay that takes everything except addresses starting with "refused" (550) and
    "later" (451)."""

    received: list[tuple[str, list[str], bytes]] = field(default_factory=list)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.startswith("refused"):
            return "550 5.1.1 no such user"
        if address.startswith("later"):
            return "451 4.3.0 try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.original_content, bytes)
        self.received.append(
            (envelope.mail_from or "", list(envelope.rcpt_tos), envelope.original_content)
        )
        return "250 2.0.0 queued as 1234"


@pytest.fixture
async def relay() -> AsyncIterator[tuple[Relay, InboundSmtpServer]]:
    sink = Relay()
    server = await start_smtp_server("127.0.0.1", 0, sink)
    try:
        yield sink, server
    finally:
        await server.close()


def smtp_settings(settings: Settings, port: int) -> Settings:
    return settings.model_copy(
        update={"mail_backend": "smtp", "smtp_host": "127.0.0.1", "smtp_port": port}
    )


async def test_smtp_sends_the_message(
    settings: Settings, relay: tuple[Relay, InboundSmtpServer]
) -> None:
    sink, server = relay
    mailer = channel_mailer_for(smtp_settings(settings, server.port))
    assert isinstance(mailer, SmtpChannelMailer)
    message_id, msg = a_reply()
    provider_id = await mailer.send_raw(FROM, ["jane@customer.example"], msg)
    assert provider_id == message_id  # bounces quote the Message-ID back
    ((mail_from, rcpt_tos, raw),) = sink.received
    assert (mail_from, rcpt_tos) == (FROM, ["jane@customer.example"])
    mail = parse_mail(raw, max_attachments=5, max_attachment_bytes=10**6)
    assert mail.message_id == message_id
    assert mail.references == ["<c0@customer.example>", "<c1@customer.example>"]
    assert mail.text == "It ships tomorrow. Grüße!"
    assert [a.filename for a in mail.attachments] == ["label.pdf"]


async def test_smtp_refusals(settings: Settings, relay: tuple[Relay, InboundSmtpServer]) -> None:
    sink, server = relay
    mailer = SmtpChannelMailer(smtp_settings(settings, server.port))
    with pytest.raises(ChannelSendFailed) as permanent:
        await mailer.send_raw(FROM, ["refused@customer.example"], a_reply()[1])
    assert permanent.value.permanent
    assert "550" in permanent.value.detail
    with pytest.raises(ChannelSendFailed) as transient:
        await mailer.send_raw(FROM, ["later@customer.example"], a_reply()[1])
    assert not transient.value.permanent
    # One of two refused: sent to the other.
    await mailer.send_raw(FROM, ["refused@x.example", "ok@x.example"], a_reply()[1])
    assert sink.received[-1][1] == ["ok@x.example"]


async def test_smtp_relay_down_is_transient(settings: Settings) -> None:
    server = await start_smtp_server("127.0.0.1", 0, Relay())
    port = server.port
    await server.close()  # nothing listens there now
    mailer = SmtpChannelMailer(smtp_settings(settings, port), timeout=5)
    with pytest.raises(ChannelSendFailed) as failed:
        await mailer.send_raw(FROM, ["jane@customer.example"], a_reply()[1])
    assert not failed.value.permanent


# -- SES ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server, endpoint_url = start_moto()
    try:
        yield endpoint_url
    finally:
        server.stop()


@pytest.fixture
def ses_settings(
    settings: Settings, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    # The mailer takes credentials from the usual AWS chain; moto accepts any.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return settings.model_copy(
        update={"mail_backend": "ses", "ses_region": REGION, "ses_endpoint_url": moto_endpoint}
    )


def _sent_by_moto(message_id: str) -> Any:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    sent = ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages
    return next(m for m in sent if m.id == message_id)


async def test_ses_sends_raw_mime(ses_settings: Settings, moto_endpoint: str) -> None:
    sender = f"support-{uuid.uuid4().hex[:8]}@{DOMAIN}"
    aws_client("sesv2", moto_endpoint).create_email_identity(EmailIdentity=sender)
    mailer = channel_mailer_for(ses_settings)
    assert isinstance(mailer, SesChannelMailer)
    message_id, msg = compose_reply(
        from_address=sender,
        display_name="Acme",
        to="jane@customer.example",
        subject="Order",
        text="Shipped.",
        message_id_domain=DOMAIN,
        in_reply_to="<c1@customer.example>",
        references=[],
    )
    ses_id = await mailer.send_raw(sender, ["jane@customer.example"], msg)
    assert ses_id and ses_id != message_id  # SES's own MessageId
    stored = _sent_by_moto(ses_id)
    assert stored.source == sender
    assert "jane@customer.example" in stored.destinations
    mail = parse_mail(stored.raw_data.encode(), max_attachments=5, max_attachment_bytes=10**6)
    assert (mail.message_id, mail.in_reply_to, mail.subject) == (
        message_id,
        "<c1@customer.example>",
        "Re: Order",
    )
    assert mail.text == "Shipped."


async def test_ses_refuses_an_unverified_sender(ses_settings: Settings) -> None:
    mailer = SesChannelMailer(ses_settings)
    with pytest.raises(ChannelSendFailed) as failed:
        await mailer.send_raw(
            f"unverified-{uuid.uuid4().hex[:8]}@elsewhere.example",
            ["jane@customer.example"],
            a_reply()[1],
        )
    assert failed.value.permanent
    assert "MessageRejected" in failed.value.detail


# -- dev ----------------------------------------------------------------------------------


async def test_dev_mailer_keeps_messages_locally(settings: Settings) -> None:
    mailer = channel_mailer_for(settings.model_copy(update={"mail_backend": "dev"}))
    assert isinstance(mailer, DevChannelMailer)
    message_id, msg = a_reply()
    assert await mailer.send_raw(FROM, ["jane@customer.example"], msg) == message_id
    assert mailer.sent[-1][:2] == (FROM, ["jane@customer.example"])
    with pytest.raises(ValueError, match="Message-ID"):
        await mailer.send_raw(FROM, ["x@y.example"], EmailMessage())
