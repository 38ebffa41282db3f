"""Outbound messages: an agent's or a bot's reply, on the conversation's channel or a
switched one, written ``queued`` in the business transaction with its threading decided
(email) and delivered after it commits (app/conversations/delivery.py). Web chat needs
no provider: the customer's stream delivers it (``sent`` at once)."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.conversations.access import not_found as conversation_not_found
from app.conversations.agent_schemas import MessageTemplate
from app.conversations.delivery import RETRY_AFTER_SECONDS, deliver_one, spawn, touch_outbound
from app.conversations.events import post_event
from app.conversations.schemas import MESSAGE_COLUMNS, MessageRead, message_read
from app.conversations.service import (
    claim_upload,
    meter_message,
    preview,
)
from app.conversations.windows import SERVICE_WINDOW_CHANNELS, check_service_window, check_template
from app.core.errors import Conflict, InvalidInput
from app.core.metrics import MESSAGES
from app.customers.service import IDENTITY_KIND_OF_CHANNEL, add_timeline
from app.db.base import utcnow, uuid7
from app.db.engine import after_commit
from app.db.tenant import TenantScope
from app.routing.connection import raw
from app.routing.transitions import dumps
from app.storage.base import ObjectStore

log = logging.getLogger("switchboard.outbound")


async def _address_for(
    conn: Any, scope: TenantScope, customer_id: uuid.UUID, channel_type: str, field: str
) -> str:
    kind = IDENTITY_KIND_OF_CHANNEL[channel_type]
    row = await conn.fetchrow(
        "SELECT value, bounced_at FROM customer_identities WHERE tenant_id = $1 "
        "AND customer_id = $2 AND kind = $3 "
        "ORDER BY (bounced_at IS NULL) DESC, last_seen_at DESC NULLS LAST LIMIT 1",
        scope.tenant_id,
        customer_id,
        kind,
    )
    if row is None:
        raise InvalidInput(
            f"{field}: the customer has no {kind} address for a {channel_type} channel",
            code="no-address-for-channel",
            field=field,
        )
    if row["bounced_at"] is not None:
        raise InvalidInput(
            f"{field}: the customer's email address bounces; use another channel",
            code="address-bounced",
            field=field,
        )
    return str(row["value"])


async def send_message(
    session: AsyncSession,
    scope: TenantScope,
    *,
    conversation_id: uuid.UUID,
    text: str,
    sender_kind: str,
    agent_id: uuid.UUID | None,
    store: ObjectStore,
    settings: Settings,
    factory: async_sessionmaker[AsyncSession] | None,
    channel_id: uuid.UUID | None = None,
    attachment_ids: list[uuid.UUID] | None = None,
    template: MessageTemplate | None = None,
) -> MessageRead:
    """Reply on the conversation's channel, or on ``channel_id`` (switch channel: the
    thread stays one conversation and later replies go there). The message is queued
    with the business transaction and delivered after it commits. A WhatsApp
    ``template`` goes instead of ``text`` (the body is its readable rendering) and may
    be sent outside the 24-hour service window."""
    conn = await raw(session)
    conv = await conn.fetchrow(
        "SELECT id, customer_id, channel_id, state, subject FROM conversations "
        "WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
        scope.tenant_id,
        conversation_id,
    )
    if conv is None:
        raise conversation_not_found()
    target = channel_id or conv["channel_id"]
    channel = await conn.fetchrow(
        "SELECT id, type, config, enabled FROM channels WHERE tenant_id = $1 AND id = $2",
        scope.tenant_id,
        target,
    )
    if channel is None or channel["type"] == "voice":
        raise InvalidInput(
            "body.channel_id: no such messaging channel in this tenant",
            code="unknown-reference",
            field="body.channel_id",
        )
    if not channel["enabled"]:
        raise Conflict("The channel is disabled.", code="channel-disabled", field="body.channel_id")
    ctype = channel["type"]
    if template is not None:
        check_template(ctype, channel["config"], template)
        text = template.readable()
    to_address = await _address_for(conn, scope, conv["customer_id"], ctype, "body.channel_id")
    if ctype in SERVICE_WINDOW_CHANNELS and template is None:
        await check_service_window(
            conn, scope, conv["customer_id"], channel["id"], ctype, sender_kind
        )
    now = utcnow()
    message_id = uuid7()
    email_id = in_reply_to = None
    references: list[str] = []
    subject = conv["subject"]
    if ctype == "email":
        last = await conn.fetchrow(
            "SELECT email_message_id, email_references, subject FROM messages "
            "WHERE tenant_id = $1 AND conversation_id = $2 AND email_message_id IS NOT NULL "
            "ORDER BY created_at DESC LIMIT 1",
            scope.tenant_id,
            conversation_id,
        )
        email_id = f"<{message_id.hex}@{settings.inbound_email_domain}>"
        if last is not None:
            in_reply_to = last["email_message_id"]
            prior = last["email_references"]
            prior = prior if isinstance(prior, list) else json.loads(prior)
            references = [*prior, in_reply_to][-20:]
            subject = subject or last["subject"]
        subject = subject or "Your conversation with us"
    status = "sent" if ctype == "webchat" else "queued"
    attachments = [
        await claim_upload(conn, scope, store, conversation_id, message_id, aid, i)
        for i, aid in enumerate(attachment_ids or [])
    ]
    await conn.execute(
        """
        INSERT INTO messages (tenant_id, id, conversation_id, customer_id, direction,
            sender_kind, agent_id, channel, channel_id, body, attachments, status, to_address,
            email_message_id, email_in_reply_to, email_references, subject, attempts,
            created_at, sent_at, template)
        VALUES ($1, $2, $3, $4, 'outbound', $5, $6, $7, $8, $9, $10::jsonb, $11, $12, $13,
                $14, $15::jsonb, $16, 0, $17, $18, $19::jsonb)
        """,
        scope.tenant_id,
        message_id,
        conversation_id,
        conv["customer_id"],
        sender_kind,
        agent_id,
        ctype,
        channel["id"],
        text,
        dumps(attachments),
        status,
        to_address,
        email_id,
        in_reply_to,
        dumps(references),
        subject if ctype == "email" else None,
        now,
        now if status == "sent" else None,
        dumps(template.model_dump()) if template is not None else None,
    )
    await meter_message(session, scope, ctype, message_id, conversation_id, "outbound", now)
    await add_timeline(
        conn,
        scope,
        customer_id=conv["customer_id"],
        kind="message.sent",
        at=now,
        conversation_id=conversation_id,
        channel=ctype,
        ref_id=message_id,
        summary={"text": preview(text), "agent_id": agent_id and str(agent_id)},
    )
    await conn.execute(
        "UPDATE conversations SET last_message_at = $3, channel = $4, channel_id = $5, "
        "updated_at = $3, version = version + 1 WHERE tenant_id = $1 AND id = $2",
        scope.tenant_id,
        conversation_id,
        now,
        ctype,
        channel["id"],
    )
    row = await conn.fetchrow(
        f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE tenant_id = $1 AND id = $2",  # noqa: S608
        scope.tenant_id,
        message_id,
    )
    read = message_read(row)
    await post_event(
        conn, scope, conversation_id, "message.created", {"message": read.model_dump(mode="json")}
    )
    if status == "sent":  # web chat: the customer's stream delivers it
        MESSAGES.inc(scope.tenant_id, ctype, "outbound", "sent")
    if status == "queued":
        # The sweeper's safety net: looked at again if delivery after commit never happens.
        await touch_outbound(conn, scope.tenant_id, now + timedelta(seconds=RETRY_AFTER_SECONDS))
    if status == "queued" and factory is not None:
        tenant_id = scope.tenant_id

        async def deliver() -> None:
            spawn(deliver_one(factory, settings, store, tenant_id, message_id))

        after_commit(session, deliver)
    return read
