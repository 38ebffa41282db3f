"""The conversation core: an inbound message finds (or opens) its conversation, is
stored with its attachments, metered, put on the customer's timeline, announced to the
customer's and the agents' streams, and routed when nobody holds the conversation. All
in the caller's transaction: a message is never half-written.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from app.conversations.events import post_event
from app.conversations.schemas import MESSAGE_COLUMNS, message_read
from app.core.errors import InvalidInput, NotFound, SwitchboardError
from app.core.metrics import MESSAGES
from app.customers.service import ResolvedIdentity, add_timeline
from app.db.base import utcnow, uuid7
from app.db.tenant import TenantScope
from app.routing.connection import raw
from app.routing.transitions import dumps
from app.storage.base import ObjectStore, tenant_key
from app.usage.service import record

log = logging.getLogger("switchboard.conversations")

# Channel type -> the routing channel queues take (app/queues/schemas.py Channel).
ROUTING_CHANNEL = {
    "webchat": "chat",
    "email": "email",
    "sms": "sms",
    "whatsapp": "messaging",
    "wechat": "messaging",
    "messenger": "messaging",
}
PREVIEW_CHARS = 200
MAX_BODY_CHARS = 100_000
# Nobody holds the conversation in these states: a customer message routes it again.
UNHELD = ("open", "pending_customer", "resolved")


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
    dup = await _duplicate(conn, scope, channel, content, conversation_id)
    if dup is not None:
        return Received(dup["conversation_id"], dup["id"], True, False)
    now = utcnow()
    conv = await _find_conversation(conn, scope, channel, identity, content, conversation_id)
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
    await conn.execute(
        """
        INSERT INTO messages (tenant_id, id, conversation_id, customer_id, direction,
            sender_kind, channel, channel_id, body, attachments, status,
            provider_message_id, client_message_id, email_message_id, email_in_reply_to,
            email_references, subject, attempts, created_at, to_address)
        VALUES ($1, $2, $3, $4, 'inbound', 'customer', $5, $6, $7, $8::jsonb, 'received',
                $9, $10, $11, $12, $13::jsonb, $14, 0, $15, $16)
        """,
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
        (email.subject or None) if email else None,
        now,
        content.to_address[:254] if content.to_address else None,
    )
    await meter_message(session, scope, channel.type, message_id, cid, "inbound", now)
    MESSAGES.inc(scope.tenant_id, channel.type, "inbound", "received")
    await add_timeline(
        conn,
        scope,
        customer_id=conv["customer_id"],
        identity_id=identity.identity_id,
        kind="message.received",
        at=now,
        conversation_id=cid,
        channel=channel.type,
        ref_id=message_id,
        summary={"text": preview(content.text), "attachments": len(attachments)},
    )
    # The customer's latest channel is where replies go by default.
    await conn.execute(
        "UPDATE conversations SET last_message_at = $3, channel = $4, channel_id = $5, "
        "updated_at = $3, version = version + 1 WHERE tenant_id = $1 AND id = $2",
        scope.tenant_id,
        cid,
        now,
        channel.type,
        channel.id,
    )
    row = await conn.fetchrow(
        f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE tenant_id = $1 AND id = $2",  # noqa: S608
        scope.tenant_id,
        message_id,
    )
    await post_event(
        conn, scope, cid, "message.created", {"message": message_read(row).model_dump(mode="json")}
    )
    if conv["state"] in UNHELD or opened:
        await route(session, scope, plan, conversation_id=cid, channel=channel, at=now)
    return Received(cid, message_id, False, opened)


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
    await record(
        session,
        scope,
        meter=f"messages.{channel_type}",
        quantity=1,
        occurred_at=at,
        idempotency_key=f"message:{message_id}",
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
    row = await conn.fetchrow(
        """
        INSERT INTO conversations (tenant_id, id, customer_id, identity_id, channel,
            channel_id, state, subject, attributes, version, created_at, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, 'open', $7, $8::jsonb, 1, $9, $9)
        RETURNING id, customer_id, state, channel_id
        """,
        scope.tenant_id,
        cid,
        identity.customer_id,
        identity.identity_id,
        channel.type,
        channel.id,
        (subject or None) and subject[:300] if subject else None,
        dumps(attributes or {}),
        at,
    )
    await conn.execute(
        "INSERT INTO conversation_participants (tenant_id, id, conversation_id, kind, role, "
        "state, joined_at) VALUES ($1, $2, $3, 'customer', 'customer', 'active', $4)",
        scope.tenant_id,
        uuid7(),
        cid,
        at,
    )
    await add_timeline(
        conn,
        scope,
        customer_id=identity.customer_id,
        identity_id=identity.identity_id,
        kind="conversation.opened",
        at=at,
        conversation_id=cid,
        channel=channel.type,
        ref_id=cid,
        summary={"subject": subject} if subject else {},
    )
    return row


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
) -> uuid.UUID | None:
    """Put the conversation in line (a routing contact) on its channel's queue or flow,
    or ``queue_id``. When that cannot be done (no queue configured, the plan's limit of
    concurrent contacts, a full line) the conversation stays ``open`` with the reason on
    it and on its event log, so nothing is lost and a supervisor sees why."""
    from app.routing.contacts import enqueue
    from app.routing.schemas import ContactCreate

    conn = await raw(session)
    conv = await conn.fetchrow(
        "SELECT id, customer_id, state, attributes FROM conversations "
        "WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
        scope.tenant_id,
        conversation_id,
    )
    if conv is None:
        raise NotFound("No such conversation.", code="conversation-not-found")
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
    queue = await conn.fetchval(
        "SELECT queue_id FROM contacts WHERE tenant_id = $1 AND id = $2",
        scope.tenant_id,
        contact_id,
    )
    reopened = conv["state"] in ("resolved", "pending_customer")
    await conn.execute(
        "UPDATE conversations SET state = 'queued', contact_id = $3, queue_id = $4, "
        "resolved_at = NULL, attributes = attributes - 'unrouted_reason', updated_at = $5, "
        "version = version + 1 WHERE tenant_id = $1 AND id = $2",
        scope.tenant_id,
        conversation_id,
        contact_id,
        queue,
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


async def _duplicate(
    conn: asyncpg.Connection,
    scope: TenantScope,
    channel: ChannelRef,
    content: InboundContent,
    conversation_id: uuid.UUID | None,
) -> asyncpg.Record | None:
    if content.provider_message_id:
        return await conn.fetchrow(
            "SELECT id, conversation_id FROM messages WHERE tenant_id = $1 AND channel_id = $2 "
            "AND provider_message_id = $3",
            scope.tenant_id,
            channel.id,
            content.provider_message_id,
        )
    if content.client_message_id and conversation_id is not None:
        return await conn.fetchrow(
            "SELECT id, conversation_id FROM messages WHERE tenant_id = $1 "
            "AND conversation_id = $2 AND client_message_id = $3",
            scope.tenant_id,
            conversation_id,
            content.client_message_id,
        )
    return None


_CONV = "SELECT id, customer_id, state, channel_id FROM conversations WHERE tenant_id = $1 "


async def _find_conversation(
    conn: asyncpg.Connection,
    scope: TenantScope,
    channel: ChannelRef,
    identity: ResolvedIdentity,
    content: InboundContent,
    conversation_id: uuid.UUID | None,
) -> asyncpg.Record | None:
    """The conversation a message belongs to, locked: the one named (web chat), the
    email thread it answers, or the customer's unresolved one on this channel."""
    if conversation_id is not None:
        row = await conn.fetchrow(
            _CONV + "AND id = $2 AND customer_id = $3 FOR UPDATE",
            scope.tenant_id,
            conversation_id,
            identity.customer_id,
        )
        if row is None:
            raise NotFound("No such conversation.", code="conversation-not-found")
        return row
    if content.email is not None:
        thread = [m for m in [content.email.in_reply_to, *reversed(content.email.references)] if m]
        if thread:
            found = await conn.fetchval(
                "SELECT conversation_id FROM messages WHERE tenant_id = $1 "
                "AND email_message_id = ANY($2::text[]) ORDER BY created_at DESC LIMIT 1",
                scope.tenant_id,
                thread[:50],
            )
            if found is not None:
                return await conn.fetchrow(_CONV + "AND id = $2 FOR UPDATE", scope.tenant_id, found)
        return None
    return await conn.fetchrow(
        _CONV + "AND customer_id = $2 AND channel_id = $3 AND state <> 'resolved' "
        "ORDER BY updated_at DESC LIMIT 1 FOR UPDATE",
        scope.tenant_id,
        identity.customer_id,
        channel.id,
    )


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
        "UPDATE attachments SET status = 'stored', size_bytes = $3, message_id = $4 "
        "WHERE tenant_id = $1 AND id = $2",
        scope.tenant_id,
        attachment_id,
        info.size,
        message_id,
    )
    return {
        "attachment_id": str(attachment_id),
        "filename": row["filename"],
        "content_type": row["content_type"],
        "size_bytes": info.size,
        "object_key": row["object_key"],
    }
