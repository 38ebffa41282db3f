"""Proactive outbound messages: the tenant writes first, on SMS, email, WhatsApp, WeChat
or Messenger. The same limits as web chat invitations apply and count together
(:mod:`app.proactive.policy`); these channels also need the customer's opt-in."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.conversations.outbound import send_message
from app.conversations.schemas import MessageRead
from app.conversations.service import ChannelRef, open_conversation, preview
from app.core.errors import Conflict, InvalidInput
from app.customers.profiles import not_found as customer_not_found
from app.customers.service import IDENTITY_KIND_OF_CHANNEL, ResolvedIdentity, add_timeline
from app.db.base import utcnow
from app.db.tenant import TenantScope
from app.proactive.policy import CONTACT, HOLD, may_contact, record_decision
from app.routing.connection import raw
from app.routing.snapshots import decode_json
from app.storage.base import ObjectStore

OUTREACH_CHANNELS = ("sms", "email", "whatsapp", "wechat", "messenger")
OPERATOR_REQUEST = "operator-request"


@dataclass(frozen=True)
class Outreach:
    """The decision, and when allowed the conversation opened and the message queued."""

    decision: asyncpg.Record
    conversation_id: uuid.UUID | None = None
    message: MessageRead | None = None

    @property
    def held(self) -> bool:
        return self.conversation_id is None


async def _channel(conn: asyncpg.Connection, scope: TenantScope, channel_id: uuid.UUID) -> Any:
    row = await conn.fetchrow(
        "SELECT id, type, config, enabled FROM channels WHERE tenant_id = $1 AND id = $2",
        scope.tenant_id,
        channel_id,
    )
    if row is None:
        raise InvalidInput(
            "body.channel_id: no such channel in this tenant",
            code="unknown-reference",
            field="body.channel_id",
        )
    if row["type"] not in OUTREACH_CHANNELS:
        raise InvalidInput(
            f"body.channel_id: proactive messages go out on {', '.join(OUTREACH_CHANNELS)} "
            f"channels, not {row['type']} (web chat invites through proactive rules)",
            code="channel-not-outbound",
            field="body.channel_id",
        )
    if not row["enabled"]:
        raise Conflict("The channel is disabled.", code="channel-disabled", field="body.channel_id")
    return row


async def _identity(
    conn: asyncpg.Connection, scope: TenantScope, customer_id: uuid.UUID, channel_type: str
) -> ResolvedIdentity:
    """The customer's address on the channel (the most recent one that does not bounce)."""
    kind = IDENTITY_KIND_OF_CHANNEL[channel_type]
    row = await conn.fetchrow(
        "SELECT id, value FROM customer_identities WHERE tenant_id = $1 AND customer_id = $2 "
        "AND kind = $3 AND bounced_at IS NULL ORDER BY last_seen_at DESC NULLS LAST LIMIT 1",
        scope.tenant_id,
        customer_id,
        kind,
    )
    if row is None:
        raise InvalidInput(
            f"body.channel_id: the customer has no {kind} address for a {channel_type} channel "
            "(or it bounces)",
            code="no-address-for-channel",
            field="body.channel_id",
        )
    return ResolvedIdentity(customer_id, row["id"], False, kind, row["value"])


async def send_proactive_message(
    session: AsyncSession,
    scope: TenantScope,
    *,
    customer_id: uuid.UUID,
    channel_id: uuid.UUID,
    text: str,
    store: ObjectStore,
    settings: Settings,
    factory: async_sessionmaker[AsyncSession] | None,
    now: datetime | None = None,
) -> Outreach:
    """Check the limits, record the decision, and when allowed open a conversation on
    the channel and queue the message (a bot message, delivered after commit). A held
    decision is returned, not raised: the caller answers 409 and keeps the record."""
    conn = await raw(session)
    now = now or utcnow()
    exists = await conn.fetchval(
        "SELECT true FROM customers WHERE tenant_id = $1 AND id = $2 AND merged_into_id IS NULL",
        scope.tenant_id,
        customer_id,
    )
    if not exists:
        raise customer_not_found()
    channel = await _channel(conn, scope, channel_id)
    identity = await _identity(conn, scope, customer_id, channel["type"])
    allowed, reason, detail = await may_contact(
        conn, scope, customer_id=customer_id, channel=channel["type"], now=now, settings=settings
    )
    detail |= {"channel_id": str(channel_id), "identity_id": str(identity.identity_id)}
    decision = await record_decision(
        conn,
        scope,
        customer_id=customer_id,
        rule_id=None,
        channel=channel["type"],
        decision=CONTACT if allowed else HOLD,
        reason=OPERATOR_REQUEST if allowed else reason,
        detail=detail,
        at=now,
    )
    if not allowed:
        return Outreach(decision)
    ref = ChannelRef(channel["id"], channel["type"], decode_json(channel["config"]) or {})
    conv = await open_conversation(
        conn,
        scope,
        channel=ref,
        identity=identity,
        subject=None,
        at=now,
        attributes={"proactive_decision_id": str(decision["id"])},
    )
    await add_timeline(
        conn,
        scope,
        customer_id=customer_id,
        identity_id=identity.identity_id,
        kind="proactive.invited",
        at=now,
        conversation_id=conv["id"],
        channel=channel["type"],
        ref_id=decision["id"],
        summary={"action": "message", "text": preview(text)},
    )
    message = await send_message(
        session,
        scope,
        conversation_id=conv["id"],
        text=text,
        sender_kind="bot",
        agent_id=None,
        store=store,
        settings=settings,
        factory=factory,
    )
    return Outreach(decision, conv["id"], message)
