"""The inbound SMTP service (aiosmtpd): the MX of the inbound email domain.

It takes mail only for addresses of that domain that a channel holds (no relaying),
refuses unknown recipients during the SMTP dialogue (so that the sender gets a bounce
from its own server, not from us), and answers 250 only once the message is stored:
when storing fails it answers 451 and the sending server retries later, so nothing is
lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from app.emailing.parse import MailRejected

log = logging.getLogger("switchboard.emailing.smtp")

Accepts = Callable[[str], Awaitable[bool]]
Deliver = Callable[[str, list[str], bytes], Awaitable[object]]
AllowPeer = Callable[[str], Awaitable[bool]]


class InboundHandler:
    """aiosmtpd handler. ``accepts(address)`` says whether a channel holds the address;
    ``deliver(mail_from, rcpt_tos, raw)`` stores the message (``mail_from`` is "" for the
    null sender of bounces) and raises ``MailRejected`` to refuse it for good."""

    def __init__(
        self,
        *,
        accepts: Accepts,
        deliver: Deliver,
        domain: str,
        max_recipients: int = 20,
        allow_peer: AllowPeer | None = None,
    ) -> None:
        self.accepts = accepts
        self.deliver = deliver
        self.domain = domain.strip().lower()
        self.max_recipients = max_recipients
        self.allow_peer = allow_peer

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        """Each message counts against its sending address's rate (``allow_peer``); past
        it, 452 asks the sending server to try later (a temporary refusal: no loss)."""
        peer = session.peer[0] if isinstance(session.peer, tuple) else str(session.peer)
        if self.allow_peer is not None and not await self.allow_peer(str(peer)):
            return "452 4.7.0 Too many messages from your address; try again later"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        address = address.strip()
        normalized = address.lower()
        if normalized in envelope.rcpt_tos:
            return "250 2.1.5 OK"
        if len(envelope.rcpt_tos) >= self.max_recipients:
            return "452 4.5.3 Too many recipients"
        _, at, domain = normalized.rpartition("@")
        if not at or domain != self.domain:
            return f"550 5.7.1 <{address}>: relay access denied"
        try:
            accepted = await self.accepts(normalized)
        except Exception:
            log.exception("recipient lookup failed")
            return "451 4.3.0 Temporary failure, try again later"
        if not accepted:
            return f"550 5.1.1 <{address}>: recipient address rejected"
        envelope.rcpt_tos.append(normalized)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content
        if not isinstance(raw, bytes):
            content = envelope.content
            raw = content.encode("utf-8", "surrogateescape") if isinstance(content, str) else b""
        mail_from = envelope.mail_from or ""
        if mail_from == "<>":
            mail_from = ""
        try:
            await self.deliver(mail_from, list(envelope.rcpt_tos), raw)
        except MailRejected as exc:
            log.info("inbound message refused: %s", exc.reason)
            return f"554 5.6.0 Message refused: {exc.reason}"
        except Exception as exc:
            # The body stays out of the log (it is the customer's mail).
            log.error(
                "inbound delivery failed (%d recipients, %d bytes): %s",
                len(envelope.rcpt_tos),
                len(raw),
                type(exc).__name__,
                exc_info=True,
            )
            return "451 4.3.0 Temporary failure, try again later"
        return "250 2.0.0 Message queued"


@dataclass
class InboundSmtpServer:
    server: asyncio.Server

    @property
    def port(self) -> int:
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        self.server.close()
        await self.server.wait_closed()


async def start_smtp_server(
    host: str,
    port: int,
    handler: Any,
    *,
    data_size_limit: int = 25 * 1024 * 1024,
    hostname: str | None = None,
    idle_timeout: float = 300,
) -> InboundSmtpServer:
    """Listen in the running event loop (port 0: any free port; see ``.port``)."""
    loop = asyncio.get_running_loop()

    def protocol() -> SMTP:
        return SMTP(
            handler,
            data_size_limit=data_size_limit,
            enable_SMTPUTF8=True,
            hostname=hostname or "switchboard",
            ident="Switchboard ESMTP",
            timeout=idle_timeout,
            loop=loop,
        )

    server = await loop.create_server(protocol, host=host, port=port)
    return InboundSmtpServer(server)
