"""Outbound mail adapters behind one interface: dev (kept), SMTP, Amazon SES (boto3)."""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage
from typing import Protocol

from app.config import Settings


class MailSender(Protocol):
    name: str

    async def send(self, to: str, subject: str, body: str) -> None: ...


class DevMailSender:
    """Keeps mail in the tenant's outbox (readable at GET /v1/dev/outbox)."""

    name = "dev"

    async def send(self, to: str, subject: str, body: str) -> None:
        return None


class SmtpMailSender:
    name = "smtp"

    def __init__(self, settings: Settings) -> None:
        self.s = settings

    def _send_sync(self, msg: EmailMessage) -> None:
        with smtplib.SMTP(self.s.smtp_host, self.s.smtp_port, timeout=15) as smtp:
            if self.s.smtp_starttls:
                smtp.starttls()
            if self.s.smtp_username and self.s.smtp_password:
                smtp.login(self.s.smtp_username, self.s.smtp_password.get_secret_value())
            smtp.send_message(msg)

    async def send(self, to: str, subject: str, body: str) -> None:
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = self.s.mail_from, to, subject
        msg.set_content(body)
        await asyncio.to_thread(self._send_sync, msg)


class SesMailSender:
    name = "ses"

    def __init__(self, settings: Settings) -> None:
        import boto3

        self.s = settings
        self.client = boto3.client(
            "sesv2", region_name=settings.ses_region, endpoint_url=settings.ses_endpoint_url
        )

    async def send(self, to: str, subject: str, body: str) -> None:
        await asyncio.to_thread(
            self.client.send_email,
            FromEmailAddress=self.s.mail_from,
            Destination={"ToAddresses": [to]},
            Content={"Simple": {"Subject": {"Data": subject}, "Body": {"Text": {"Data": body}}}},
        )


def sender_for(settings: Settings) -> MailSender:
    if settings.mail_backend == "smtp":
        return SmtpMailSender(settings)
    if settings.mail_backend == "ses":
        return SesMailSender(settings)
    return DevMailSender()
