"""The conversation core: an inbound message finds (or opens) its conversation, is
stored with its attachments, metered, put on the customer's timeline, announced to the
customer's and the agents' streams, and routed when nobody holds the conversation. All
in the caller's transaction: a message is never half-written.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from app.channels.validation import ROUTING_CHANNEL
from app.conversations.access import not_found as conversation_not_found
from app.conversations.events import (
    CONVERSATION_CHANNEL,
    copy_to_agents,
    event_ctes,
    post_event,
)
from app.conversations.inbound_lookup import duplicate_or_conversation
from app.conversations.schemas import MessageRead, message_read
from app.core.errors import InvalidInput, SwitchboardError
from app.core.metrics import MESSAGES
from app.customers.service import ResolvedIdentity, add_timeline
from app.db.base import utcnow, uuid7
from app.db.tenant import TenantScope
from app.routing.connection import raw
from app.routing.transitions import dumps
from app.storage.base import ObjectStore, tenant_key
from app.usage.service import UsageRow, record_on, usage_row

log = logging.getLogger("switchboard.conversations")

PREVIEW_CHARS = 200
MAX_BODY_CHARS = 100_000
# Nobody holds the conversation in these states: a customer message routes it again.
UNHELD = ("open", "pending_customer", "resolved")
_ONE = Decimal(1)


@dataclass(frozen=True)
class ChannelRef:
    id: uuid.UUID
    type: str
    config: dict[str, Any]

    @classmethod
    def of(cls, channel: Any) -> ChannelRef:
        return cls(channel.id, channel.type, dict(channel.config or {}))


@dataclass(frozen=True)
class AttachmentIn:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class EmailMeta:
    message_id: str | None
    in_reply_to: str | None
    references: list[str] = field(default_factory=list)
    subject: str | None = None


@dataclass
class InboundContent:
    text: str
    attachments: list[AttachmentIn] = field(default_factory=list)
    attachment_ids: list[uuid.UUID] = field(default_factory=list)
    provider_message_id: str | None = None
    email: EmailMeta | None = None
    client_message_id: str | None = None
    sent_at: datetime | None = None
    # Our address the customer wrote to (the Twilio number, the WhatsApp business
    # number): replies on that channel go out from it.
    to_address: str | None = None


@dataclass(frozen=True)
class Received:
    conversation_id: uuid.UUID
    message_id: uuid.UUID
    duplicate: bool
    opened: bool
    # The message as written (what a read of its row answers), so callers need not read
    # it back; None for a duplicate, where only the first message's ids are known.
    message: MessageRead | None = None


def preview(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= PREVIEW_CHARS else flat[: PREVIEW_CHARS - 1] + "…"


async def receive(
    session: AsyncSession,
    scope: TenantScope,
    plan: str,
    *,
    channel: ChannelRef,
    identity: ResolvedIdentity,
    content: InboundContent,
    store: ObjectStore,
    conversation_id: uuid.UUID | None = None,
) -> Received:
    """Take one customer message (see the module docstring). A message a provider sends
    again (same ``provider_message_id``) or a widget resends (same ``client_message_id``)
    is answered with the first one and changes nothing."""
    conn = await raw(session)
    if len(content.text) > MAX_BODY_CHARS:
        raise InvalidInput(f"body.text: longer than {MAX_BODY_CHARS} characters", field="body.text")
    dup, conv = await duplicate_or_conversation(
        conn, scope, channel, identity, content, conversation_id
    )
    if dup is not None:
        return Received(dup["conversation_id"], dup["id"], True, False)
    now = utcnow()
    opened = conv is None
    if conv is None:
        conv = await open_conversation(
            conn,
            scope,
            channel=channel,
            identity=identity,
            subject=content.email.subject if content.email else None,
            at=now,
        )
    cid: uuid.UUID = conv["id"]
    message_id = uuid7()
    attachments = await _store_attachments(conn, scope, store, cid, message_id, content)
    email = content.email
    usage = _usage(channel.type, message_id, cid, "inbound", now)
    subject = (email.subject or None) if email else None
    # The message as readers see it: the event carries it, and it is written in the same
    # statement (every value is ours; the columns' defaults are nulls).
    message = message_read(
        {
            "id": message_id,
            "conversation_id": cid,
            "direction": "inbound",
            "sender_kind": "customer",
            "agent_id": None,
            "channel": channel.type,
            "channel_id": channel.id,
            "body": content.text,
            "attachments": attachments,
            "status": "received",
            "subject": subject,
            "client_message_id": content.client_message_id,
            "created_at": now,
            "sent_at": None,
            "delivered_at": None,
            "read_at": None,
            "error": None,
        }
    )
    event = {"message": message.model_dump(mode="json")}
    # One round trip: the message, its usage event, its place on the customer's timeline,
    # the conversation's latest channel (where replies go by default) and the
    # message.created event with its NOTIFY (sent at commit).
    row = await conn.fetchrow(
        _INSERT_INBOUND,
        scope.tenant_id,
        message_id,
        cid,
        conv["customer_id"],
        channel.type,
        channel.id,
        content.text,
        dumps(attachments),
        content.provider_message_id,
        content.client_message_id,
        email.message_id if email else None,
        email.in_reply_to if email else None,
        dumps(email.references if email else []),
        subject,
        now,
        content.to_address[:254] if content.to_address else None,
        uuid7(),
        identity.identity_id,
        dumps({"text": preview(content.text), "attachments": len(attachments)}),
        uuid7(),
        usage.meter,
        usage.quantity,
        usage.idempotency_key,
        usage.attributes_json,
        dumps(event),
        CONVERSATION_CHANNEL,
    )
    if not row["metered"]:  # the key was taken: record_on compares with the first event
        await _meter_on(conn, scope, channel.type, message_id, cid, "inbound", now)
    MESSAGES.inc(scope.tenant_id, channel.type, "inbound", "received")
    await copy_to_agents(
        conn, scope, cid, "message.created", event, row["event_id"], row["watchers"]
    )
    if conv["state"] in UNHELD or opened:
        await route(session, scope, plan, conversation_id=cid, channel=channel, at=now, locked=conv)
    return Received(cid, message_id, False, opened, message)


_INSERT_INBOUND = (
    """
WITH msg AS (
  INSERT INTO messages (tenant_id, id, conversation_id, customer_id, direction,
      sender_kind, channel, channel_id, body, attachments, status,
      provider_message_id, client_message_id, email_message_id, email_in_reply_to,
      email_references, subject, attempts, created_at, to_address)
  VALUES ($1, $2, $3, $4, 'inbound', 'customer', $5, $6, $7, $8::jsonb, 'received',
          $9, $10, $11, $12, $13::jsonb, $14, 0, $15, $16)
), timeline AS (
  INSERT INTO timeline_events (tenant_id, id, customer_id, identity_id, at, kind, channel,
      conversation_id, ref_id, summary)
  VALUES ($1, $17, $4, $18, $15, 'message.received', $5, $3, $2, $19::jsonb)
), conversation AS (
  UPDATE conversations SET last_message_at = $15, channel = $5, channel_id = $6,
         updated_at = $15, version = version + 1
   WHERE tenant_id = $1 AND id = $3
), usage AS (
  INSERT INTO usage_events (tenant_id, id, meter, quantity, occurred_at, recorded_at,
      idempotency_key, attributes)
  VALUES ($1, $20, $21, $22, $15, now(), $23, $24::jsonb)
  ON CONFLICT (tenant_id, idempotency_key) DO NOTHING
  RETURNING id
),"""  # noqa: S608 - placeholders and literals of ours
    + event_ctes("$1", "$3", "'message.created'", "'all'", "$25", "$26")
    + """
SELECT announced.id AS event_id, announced.watchers, EXISTS (SELECT 1 FROM usage) AS metered
  FROM announced
"""
)


async def meter_message(
    session: AsyncSession,
    scope: TenantScope,
    channel_type: str,
    message_id: uuid.UUID,
    conversation_id: uuid.UUID,
    direction: str,
    at: datetime,
) -> None:
    """One message on the usage ledger, in the transaction that stores it."""
    await _meter_on(
        await raw(session), scope, channel_type, message_id, conversation_id, direction, at
    )


def _usage(
    channel_type: str,
    message_id: uuid.UUID,
    conversation_id: uuid.UUID,
    direction: str,
    at: datetime,
) -> UsageRow:
    return usage_row(
        f"messages.{channel_type}",
        _ONE,
        at,
        f"message:{message_id}",
        {"direction": direction, "conversation_id": str(conversation_id)},
    )


async def _meter_on(
    conn: asyncpg.Connection,
    scope: TenantScope,
    channel_type: str,
    message_id: uuid.UUID,
    conversation_id: uuid.UUID,
    direction: str,
    at: datetime,
) -> None:
    usage = _usage(channel_type, message_id, conversation_id, direction, at)
    await record_on(
        conn,
        scope,
        meter=usage.meter,
        quantity=usage.quantity,
        occurred_at=at,
        idempotency_key=usage.idempotency_key,
        attributes={"direction": direction, "conversation_id": str(conversation_id)},
    )


async def open_conversation(
    conn: asyncpg.Connection,
    scope: TenantScope,
    *,
    channel: ChannelRef,
    identity: ResolvedIdentity,
    subject: str | None,
    at: datetime,
    attributes: dict[str, Any] | None = None,
) -> asyncpg.Record:
    cid = uuid7()
    # One round trip: the conversation, the customer as its participant, and the
    # opening on the customer's timeline.
    row: asyncpg.Record = await conn.fetchrow(
        _OPEN,
        scope.tenant_id,
        cid,
        identity.customer_id,
        identity.identity_id,
        channel.type,
        channel.id,
        (subject or None) and subject[:300] if subject else None,
        dumps(attributes or {}),
        at,
        uuid7(),
        uuid7(),
        dumps({"subject": subject} if subject else {}),
    )
    return row


_OPEN = """
WITH conversation AS (
  INSERT INTO conversations (tenant_id, id, customer_id, identity_id, channel,
      channel_id, state, subject, attributes, version, created_at, updated_at)
  VALUES ($1, $2, $3, $4, $5, $6, 'open', $7, $8::jsonb, 1, $9, $9)
  RETURNING id, customer_id, state, channel_id
), participant AS (
  INSERT INTO conversation_participants (tenant_id, id, conversation_id, kind, role, state,
      joined_at)
  VALUES ($1, $10, $2, 'customer', 'customer', 'active', $9)
), timeline AS (
  INSERT INTO timeline_events (tenant_id, id, customer_id, identity_id, at, kind, channel,
      conversation_id, ref_id, summary)
  VALUES ($1, $11, $3, $4, $9, 'conversation.opened', $5, $2, $2, $12::jsonb)
)
SELECT * FROM conversation
"""


async def route(
    session: AsyncSession,
    scope: TenantScope,
    plan: str,
    *,
    conversation_id: uuid.UUID,
    channel: ChannelRef,
    at: datetime,
    queue_id: uuid.UUID | None = None,
    extra_attributes: dict[str, Any] | None = None,
    preferred_agent_ids: list[uuid.UUID] | None = None,
    locked: Mapping[str, Any] | None = None,
) -> uuid.UUID | None:
    """Put the conversation in line (a routing contact) on its channel's queue or flow,
    or ``queue_id``. When that cannot be done (no queue configured, the plan's limit of
    concurrent contacts, a full line) the conversation stays ``open`` with the reason on
    it and on its event log, so nothing is lost and a supervisor sees why.

    ``locked``: the conversation's row (``customer_id``, ``state``) when the caller
    already holds its lock in this transaction; it is not read again."""
    from app.routing.contacts import enqueue
    from app.routing.schemas import ContactCreate

    conn = await raw(session)
    conv = locked
    if conv is None:
        conv = await conn.fetchrow(
            "SELECT id, customer_id, state FROM conversations "
            "WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
            scope.tenant_id,
            conversation_id,
        )
    if conv is None:
        raise conversation_not_found()
    target_queue = queue_id or _uuid_or_none(channel.config.get("queue_id"))
    flow_id = None if queue_id else _uuid_or_none(channel.config.get("flow_id"))
    reason = None
    contact_id = None
    if target_queue is None and flow_id is None:
        reason = "the channel has no queue or flow to route conversations to"
    else:
        attributes = {
            "conversation_id": str(conversation_id),
            "customer_id": str(conv["customer_id"]),
            "channel_type": channel.type,
        } | (extra_attributes or {})
        data = ContactCreate(
            channel=ROUTING_CHANNEL[channel.type],  # type: ignore[arg-type]
            queue_id=target_queue,
            flow_id=flow_id,
            customer_ref=str(conv["customer_id"]),
            attributes=attributes,
            preferred_agent_ids=preferred_agent_ids or [],
        )
        try:
            contact_id = await enqueue(session, scope, plan, data, conversation_id=conversation_id)
        except SwitchboardError as exc:  # refused before any write: keep the conversation
            reason = exc.detail
    if contact_id is None:
        await conn.execute(
            "UPDATE conversations SET state = 'open', attributes = attributes || $3::jsonb, "
            "updated_at = $4, version = version + 1 WHERE tenant_id = $1 AND id = $2",
            scope.tenant_id,
            conversation_id,
            dumps({"unrouted_reason": reason}),
            at,
        )
        await post_event(
            conn,
            scope,
            conversation_id,
            "conversation.unrouted",
            {"reason": reason},
            audience="agents",
        )
        log.warning(
            "conversation not routed: %s", reason, extra={"conversation_id": str(conversation_id)}
        )
        return None
    reopened = conv["state"] in ("resolved", "pending_customer")
    # The contact's queue, not the target: the line may have overflowed elsewhere.
    queue = await conn.fetchval(
        "UPDATE conversations SET state = 'queued', contact_id = $3, queue_id = ("
        "SELECT queue_id FROM contacts WHERE tenant_id = $1 AND id = $3), "
        "resolved_at = NULL, attributes = attributes - 'unrouted_reason', updated_at = $4, "
        "version = version + 1 WHERE tenant_id = $1 AND id = $2 RETURNING queue_id",
        scope.tenant_id,
        conversation_id,
        contact_id,
        at,
    )
    if reopened:
        await add_timeline(
            conn,
            scope,
            customer_id=conv["customer_id"],
            kind="conversation.reopened",
            at=at,
            conversation_id=conversation_id,
            channel=channel.type,
            ref_id=conversation_id,
        )
    await post_event(
        conn,
        scope,
        conversation_id,
        "conversation.queued",
        {"contact_id": str(contact_id), "queue_id": str(queue)},
    )
    return contact_id


def _uuid_or_none(value: Any) -> uuid.UUID | None:
    if value is None:
        return None
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


async def _store_attachments(
    conn: asyncpg.Connection,
    scope: TenantScope,
    store: ObjectStore,
    conversation_id: uuid.UUID,
    message_id: uuid.UUID,
    content: InboundContent,
) -> list[dict[str, Any]]:
    """Bytes go to object storage under the tenant's prefix; uploaded ones (presigned)
    are checked against what was announced before the message may name them."""
    out: list[dict[str, Any]] = []
    for item in content.attachments:
        aid = uuid7()
        key = tenant_key(
            scope.tenant_id, "conversations", str(conversation_id), str(aid), item.filename
        )
        await store.put(key, item.data, item.content_type)
        await conn.execute(
            "INSERT INTO attachments (tenant_id, id, conversation_id, message_id, object_key, "
            "filename, content_type, size_bytes, max_bytes, status, uploaded_by, created_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, 'stored', 'provider', now())",
            scope.tenant_id,
            aid,
            conversation_id,
            message_id,
            key,
            item.filename[:255],
            item.content_type[:100],
            len(item.data),
        )
        out.append(
            {
                "attachment_id": str(aid),
                "filename": item.filename[:255],
                "content_type": item.content_type[:100],
                "size_bytes": len(item.data),
                "object_key": key,  # internal: readers (AttachmentRef) never show it
            }
        )
    for i, aid in enumerate(content.attachment_ids):
        out.append(await claim_upload(conn, scope, store, conversation_id, message_id, aid, i))
    return out


async def claim_upload(
    conn: asyncpg.Connection,
    scope: TenantScope,
    store: ObjectStore,
    conversation_id: uuid.UUID,
    message_id: uuid.UUID,
    attachment_id: uuid.UUID,
    index: int,
) -> dict[str, Any]:
    """Attach an uploaded file to a message: it must belong to this conversation, not be
    attached yet, and be in storage with the announced type and within the size limit
    (what was uploaded is checked, not what the client said)."""
    where = f"body.attachment_ids.{index}"
    row = await conn.fetchrow(
        "SELECT id, object_key, filename, content_type, max_bytes, status, message_id "
        "FROM attachments WHERE tenant_id = $1 AND id = $2 AND conversation_id = $3 FOR UPDATE",
        scope.tenant_id,
        attachment_id,
        conversation_id,
    )
    if row is None or row["message_id"] is not None:
        raise InvalidInput(
            f"{where}: no such upload in this conversation (or already sent)",
            code="unknown-attachment",
            field=where,
        )
    info = await store.head(row["object_key"])
    if info is None:
        raise InvalidInput(
            f"{where}: the file has not been uploaded yet", code="upload-missing", field=where
        )
    if info.size > row["max_bytes"] or (
        info.content_type and info.content_type.split(";")[0].strip() != row["content_type"]
    ):
        await store.delete(row["object_key"])
        raise InvalidInput(
            f"{where}: the uploaded file is larger than allowed or of another type",
            code="upload-rejected",
            field=where,
        )
    await conn.execute(
        "UPDATE attachments SET status = 'stored', size_bytes = $3, message_id = $4, "
        "etag = $5 WHERE tenant_id = $1 AND id = $2",
        scope.tenant_id,
        attachment_id,
        info.size,
        message_id,
        info.etag[:200] or None,
    )
    return {
        "attachment_id": str(attachment_id),
        "filename": row["filename"],
        "content_type": row["content_type"],
        "size_bytes": info.size,
        "object_key": row["object_key"],
    }
