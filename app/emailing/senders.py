"""Outbound channel mail: one raw MIME message to its recipients, by SMTP relay or
Amazon SES (boto3 ``sesv2``), or kept in memory in development.

Each returns the provider's id for the message, which delivery updates (bounces, SES
notifications) are matched against: SES's MessageId, or the Message-ID header for SMTP
(bounces quote it back).
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
from collections import deque
from email.message import EmailMessage
from typing import Any, Protocol

from app.config import Settings
from app.emailing.compose import POLICY

log = logging.getLogger("switchboard.emailing")


class ChannelSendFailed(Exception):
    """The provider refused the message. ``permanent``: retrying will not help (a
    rejected recipient, an unverified sender); otherwise try again later."""

    def __init__(self, detail: str, *, permanent: bool) -> None:
        super().__init__(detail)
        self.detail = detail
        self.permanent = permanent


class ChannelMailer(Protocol):
    name: str

    async def send_raw(self, from_addr: str, to_addrs: list[str], message: EmailMessage) -> str:
        """Send ``message`` with the envelope ``from_addr`` -> ``to_addrs``; return the
        provider's message id."""
        ...


def _message_id(message: EmailMessage) -> str:
    value = message.get("Message-ID")
    if not value:
        raise ValueError("the message has no Message-ID (compose it with compose_reply)")
    return str(value).strip()


class DevChannelMailer:
    """Sends nothing anywhere: keeps the last messages in memory (development, demos)."""

    name = "dev"

    def __init__(self, keep: int = 100) -> None:
        self.sent: deque[tuple[str, list[str], EmailMessage]] = deque(maxlen=keep)

    async def send_raw(self, from_addr: str, to_addrs: list[str], message: EmailMessage) -> str:
        message_id = _message_id(message)
        self.sent.append((from_addr, list(to_addrs), message))
        return message_id


class SmtpChannelMailer:
    """Through the configured relay (smtp_host/port, STARTTLS and login when set)."""

    name = "smtp"

    def __init__(self, settings: Settings, *, timeout: float = 30) -> None:
        self.s = settings
        self.timeout = timeout

    def _send_sync(self, from_addr: str, to_addrs: list[str], message: EmailMessage) -> None:
        try:
            with smtplib.SMTP(self.s.smtp_host, self.s.smtp_port, timeout=self.timeout) as smtp:
                if self.s.smtp_starttls:
                    smtp.starttls()
                if self.s.smtp_username and self.s.smtp_password:
                    smtp.login(self.s.smtp_username, self.s.smtp_password.get_secret_value())
                refused = smtp.sendmail(from_addr, to_addrs, message.as_bytes(policy=POLICY))
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise ChannelSendFailed(
                "every recipient was refused: " + _refusals(exc.recipients),
                permanent=all(500 <= c < 600 for c in codes),
            ) from None
        except smtplib.SMTPResponseException as exc:
            raise ChannelSendFailed(
                f"the relay answered {exc.smtp_code}: {_text(exc.smtp_error)}",
                permanent=500 <= exc.smtp_code < 600,
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise ChannelSendFailed(
                f"the relay could not be reached: {type(exc).__name__}: {exc}", permanent=False
            ) from None
        if refused:  # the others took it: it is sent
            log.warning("the relay refused %d of %d recipients", len(refused), len(to_addrs))

    async def send_raw(self, from_addr: str, to_addrs: list[str], message: EmailMessage) -> str:
        message_id = _message_id(message)
        await asyncio.to_thread(self._send_sync, from_addr, list(to_addrs), message)
        return message_id


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _refusals(refused: dict[str, tuple[int, bytes]]) -> str:
    return "; ".join(f"{rcpt}: {code} {_text(msg)}" for rcpt, (code, msg) in refused.items())


# SES error codes after which a retry may succeed.
_SES_TRANSIENT = frozenset(
    {"TooManyRequestsException", "Throttling", "ThrottlingException", "LimitExceededException",
     "InternalFailure", "ServiceUnavailable", "InternalServiceErrorException"}
)  # fmt: skip


class SesChannelMailer:
    """Amazon SES v2 ``SendEmail`` with raw content (our MIME, our threading headers)."""

    name = "ses"

    def __init__(self, settings: Settings) -> None:
        import boto3

        self.client: Any = boto3.client(
            "sesv2", region_name=settings.ses_region, endpoint_url=settings.ses_endpoint_url
        )

    def _send_sync(self, from_addr: str, to_addrs: list[str], data: bytes) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self.client.send_email(
                FromEmailAddress=from_addr,
                Destination={"ToAddresses": to_addrs},
                Content={"Raw": {"Data": data}},
            )
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            message = str(exc.response.get("Error", {}).get("Message", ""))
            raise ChannelSendFailed(
                f"SES refused the message: {code}: {message}",
                permanent=code not in _SES_TRANSIENT,
            ) from None
        except BotoCoreError as exc:
            raise ChannelSendFailed(f"SES could not be reached: {exc}", permanent=False) from None
        return str(response["MessageId"])

    async def send_raw(self, from_addr: str, to_addrs: list[str], message: EmailMessage) -> str:
        _message_id(message)
        data = message.as_bytes(policy=POLICY)
        return await asyncio.to_thread(self._send_sync, from_addr, list(to_addrs), data)


def channel_mailer_for(settings: Settings) -> ChannelMailer:
    """The mailer for ``settings.mail_backend`` (the same backend as platform mail)."""
    if settings.mail_backend == "smtp":
        return SmtpChannelMailer(settings)
    if settings.mail_backend == "ses":
        return SesChannelMailer(settings)
    return DevChannelMailer()
