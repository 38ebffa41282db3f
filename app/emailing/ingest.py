"""Inbound mail into conversations: the inbound SMTP server's ``accepts`` and ``deliver``.

For each recipient (a channel's address) the tenant is found on the platform address
table, bound for row-level security, and the message goes to the conversation core in a
transaction of its own. A delivery report (bounce) updates the status of the message it
reports on instead; auto-replies and mail from our own domain are dropped, so that two
auto-responders cannot loop through us. When anything fails the exception reaches the
SMTP server, which answers 451: the sending server retries, and recipients already
stored are not stored twice (the Message-ID is the provider message id, deduplicated).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.channels import repository as channel_repo
from app.channels.models import Channel
from app.config import Settings
from app.conversations.receipts import update_delivery
from app.conversations.service import (
    MAX_BODY_CHARS,
    AttachmentIn,
    ChannelRef,
    EmailMeta,
    InboundContent,
    receive,
)
from app.core.abuse import MINUTE, Limit, address_bucket, hit
from app.core.errors import InvalidInput, TooManyRequests
from app.customers.service import normalize_identity, resolve_identity
from app.db.base import utcnow
from app.db.engine import run_after_commit
from app.db.tenant import TenantScope, bind_tenant, mint_scope
from app.emailing.bounces import Bounce, parse_bounce
from app.emailing.parse import MailRejected, ParsedMail, parse_mail
from app.routing.connection import raw as raw_connection
from app.storage.base import ObjectStore
from app.tenants import repository as tenant_repo
from app.tenants.models import TenantStatus

log = logging.getLogger("switchboard.emailing.ingest")

_COLUMN_CHARS = 300  # messages.email_message_id / email_in_reply_to / subject
_MAX_STORED_REFERENCES = 50
_CLOSED = (TenantStatus.suspended.value, TenantStatus.closed.value)


@dataclass(frozen=True)
class Delivery:
    """What became of the message for one recipient."""

    address: str
    outcome: str  # received | duplicate | bounce | auto-submitted | loop | unknown-address
    conversation_id: uuid.UUID | None = None
    message_id: uuid.UUID | None = None


SessionFactory = async_sessionmaker[AsyncSession]


async def _email_channel(
    session: AsyncSession, settings: Settings, address: str
) -> tuple[TenantScope, Channel, str] | None:
    """The enabled email channel holding ``address`` (tenant bound), with its tenant's
    plan; None for unknown addresses, other domains, disabled channels and tenants."""
    address = address.strip().lower()
    if address.rpartition("@")[2] != settings.inbound_email_domain.strip().lower():
        return None
    found = await channel_repo.resolve_address(session, "email", address)
    if found is None:
        return None
    tenant = await tenant_repo.get(session, found[0])
    if tenant is None or tenant.status in _CLOSED:
        return None
    scope = mint_scope(found[0])
    await bind_tenant(session, scope)
    channel = await channel_repo.get(session, scope, found[1])
    if channel is None or not channel.enabled or channel.type != "email":
        return None
    return scope, channel, tenant.plan


async def allow_peer(factory: SessionFactory, settings: Settings, peer: str) -> bool:
    """Whether a sending address is within its rate of messages (shared by every SMTP
    process through the abuse counters)."""
    limit = Limit("smtp_message", settings.smtp_messages_per_address_per_minute, MINUTE)
    try:
        await hit(factory, address_bucket(peer, limit), limit)
    except TooManyRequests:
        log.warning("inbound SMTP rate limit reached", extra={"peer": peer})
        return False
    return True


async def accepts(factory: SessionFactory, settings: Settings, address: str) -> bool:
    """Whether an enabled email channel receives at ``address`` (the SMTP RCPT check)."""
    async with factory() as session, session.begin():
        return await _email_channel(session, settings, address) is not None


def _sender(parsed: ParsedMail, mail_from: str) -> str:
    """The customer's address: the From header, else the envelope sender."""
    for candidate in (parsed.from_address, mail_from):
        if candidate:
            try:
                return normalize_identity("email", candidate)
            except InvalidInput:
                continue
    raise MailRejected("no valid sender address (From)")


def _clip_id(value: str | None) -> str | None:
    return value if value and len(value) <= _COLUMN_CHARS else None


def _content(parsed: ParsedMail, allowed_types: list[str]) -> InboundContent:
    attachments: list[AttachmentIn] = []
    notes: list[str] = []
    for skipped in parsed.skipped:
        notes.append(f"{skipped.filename} ({skipped.reason})")
    for item in parsed.attachments:
        if item.content_type not in allowed_types:
            notes.append(f"{item.filename} (content-type-not-allowed: {item.content_type})")
            continue
        attachments.append(AttachmentIn(item.filename, item.content_type, item.data))
    text = parsed.reply_text or parsed.text
    if notes:
        text = f"{text}\n\n[Attachments not kept: {'; '.join(notes)}]".strip()
    if len(text) > MAX_BODY_CHARS:
        text = text[: MAX_BODY_CHARS - 1] + "…"
    message_id = _clip_id(parsed.message_id) or parsed.fingerprint
    references = [r for r in parsed.references if len(r) <= _COLUMN_CHARS]
    if len(references) > _MAX_STORED_REFERENCES:
        references = [references[0], *references[-(_MAX_STORED_REFERENCES - 1) :]]
    return InboundContent(
        text=text,
        attachments=attachments,
        provider_message_id=message_id,
        email=EmailMeta(
            message_id=message_id,
            in_reply_to=_clip_id(parsed.in_reply_to),
            references=references,
            subject=parsed.subject[:_COLUMN_CHARS] if parsed.subject else None,
        ),
        sent_at=parsed.date,
    )


def _provider_ids(message_id: str | None) -> list[str]:
    """The ids our sent message may be stored under: its Message-ID (SMTP), and for
    Amazon SES, which replaces the Message-ID with ``<MessageId@...amazonses.com>``,
    SES's MessageId."""
    if not message_id:
        return []
    out = [message_id]
    local, _, domain = message_id.strip("<>").rpartition("@")
    if local and domain.lower().endswith("amazonses.com"):
        out.append(local)
    return out


async def _record_bounce(
    session: AsyncSession, scope: TenantScope, channel: Channel, bounce: Bounce, at: datetime
) -> None:
    """Mark the reported message failed (or delivered) and, for a permanent failure, the
    customer's address as bouncing, so that agents are told to use another channel.
    Only addresses of the customer the reported message went to are marked: a forged
    report cannot mark anyone else's."""
    ids = _provider_ids(bounce.original_message_id)
    if bounce.action == "failed":
        status, error = "failed", (bounce.diagnostic or "the message bounced")
    elif bounce.action == "delivered":
        status, error = "delivered", None
    else:  # delayed, relayed, expanded: still on its way
        return
    for provider_id in ids:
        if await update_delivery(
            session,
            scope,
            channel_id=channel.id,
            provider_message_id=provider_id,
            status=status,
            error=error,
            at=at,
        ):
            break
    if status != "failed" or not bounce.permanent or not ids:
        return
    addresses: list[str] = []
    for r in bounce.recipients:
        if r.action == "failed" and r.permanent and r.final_recipient:
            try:
                addresses.append(normalize_identity("email", r.final_recipient))
            except InvalidInput:
                continue
    if not addresses:
        return
    conn = await raw_connection(session)
    await conn.execute(
        "UPDATE customer_identities SET bounced_at = $4 WHERE tenant_id = $1 AND kind = 'email' "
        "AND value = ANY($3::text[]) AND bounced_at IS NULL AND customer_id IN ("
        "  SELECT customer_id FROM messages WHERE tenant_id = $1 AND channel_id = $2 "
        "  AND provider_message_id = ANY($5::text[]))",
        scope.tenant_id,
        channel.id,
        addresses,
        at,
        ids,
    )


async def _deliver_one(
    factory: SessionFactory,
    settings: Settings,
    store: ObjectStore,
    address: str,
    parsed: ParsedMail,
    bounce: Bounce | None,
    sender: str | None,
) -> Delivery:
    async with factory() as session:
        async with session.begin():
            delivery = await _take_one(session, settings, store, address, parsed, bounce, sender)
        await run_after_commit(session)  # deliveries the message queued, if any
        return delivery


async def _take_one(
    session: AsyncSession,
    settings: Settings,
    store: ObjectStore,
    address: str,
    parsed: ParsedMail,
    bounce: Bounce | None,
    sender: str | None,
) -> Delivery:
    found = await _email_channel(session, settings, address)
    if found is None:
        log.warning("inbound mail for an address no channel holds any more")
        return Delivery(address, "unknown-address")
    scope, channel, plan = found
    if bounce is not None:
        await _record_bounce(session, scope, channel, bounce, utcnow())
        return Delivery(address, "bounce")
    if parsed.auto_submitted:
        log.info("auto-submitted mail dropped", extra={"tenant.id": str(scope.tenant_id)})
        return Delivery(address, "auto-submitted")
    assert sender is not None
    identity = await resolve_identity(
        session, scope, "email", sender, display_name=parsed.from_name
    )
    try:
        received = await receive(
            session,
            scope,
            plan,
            channel=ChannelRef.of(channel),
            identity=identity,
            content=_content(parsed, settings.attachment_content_types),
            store=store,
        )
    except InvalidInput as exc:  # our refusal of this mail; retrying cannot help
        raise MailRejected(exc.detail) from None
    outcome = "duplicate" if received.duplicate else "received"
    return Delivery(address, outcome, received.conversation_id, received.message_id)


async def ingest(
    factory: SessionFactory,
    settings: Settings,
    store: ObjectStore,
    mail_from: str,
    rcpt_tos: list[str],
    raw: bytes,
) -> list[Delivery]:
    """Take one inbound message for its recipients (see the module docstring). Raises
    ``MailRejected`` for mail refused for good, anything else for a temporary failure."""
    parsed = await asyncio.to_thread(
        parse_mail,
        raw,
        max_attachments=settings.email_max_attachments,
        max_attachment_bytes=settings.attachment_max_bytes,
    )
    bounce = parse_bounce(parsed, mail_from)
    sender: str | None = None
    if bounce is None:
        ours = settings.inbound_email_domain.strip().lower()
        if any(
            (a or "").strip().lower().rpartition("@")[2] == ours
            for a in (parsed.from_address, mail_from)
        ):
            # One of our own addresses writing to another: a loop, or a forgery.
            log.warning("inbound mail from our own domain dropped")
            return [Delivery(a, "loop") for a in dict.fromkeys(rcpt_tos)]
        sender = _sender(parsed, mail_from)
    digest = hashlib.sha256(raw).hexdigest()[:16]
    out: list[Delivery] = []
    for address in dict.fromkeys(a.strip().lower() for a in rcpt_tos):
        out.append(await _deliver_one(factory, settings, store, address, parsed, bounce, sender))
    log.info(
        "inbound mail %s: %s",
        digest,
        ", ".join(d.outcome for d in out),
        extra={"bytes": len(raw), "bounce": bounce is not None},
    )
    return out
