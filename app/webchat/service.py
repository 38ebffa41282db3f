"""The visitor's chats: start one, send messages (a resend is answered with the first
one), read the thread, mark agents' messages read, type, upload and download files.

A visitor sees only the conversations opened through their own visitor identity (not
the profile's other channels: an email thread of the same customer stays out of a
browser anyone could sit at), and never internal notes. Every change that posts a
conversation event locks the conversation first, so the event ids of one conversation
commit in order and a stream resuming after an id misses nothing (app/webchat/hub.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.conversations.access import not_found as conversation_not_found
from app.conversations.events import post_event
from app.conversations.schemas import MESSAGE_COLUMNS, MessageRead
from app.conversations.service import (
    InboundContent,
    Received,
    open_conversation,
    receive,
)
from app.conversations.uploads import check_unchanged, grant_upload
from app.core.errors import InvalidInput, NotFound
from app.core.pagination import PageParams, page_rows
from app.db.base import utcnow
from app.db.tenant import TenantScope
from app.routing.connection import raw
from app.routing.contacts import position_and_wait
from app.routing.snapshots import decode_json
from app.storage.base import ObjectStore
from app.webchat.schemas import (
    AgentInfo,
    ChatStarted,
    MessagePage,
    MessagePosted,
    UploadCreate,
    UploadGrant,
    WidgetAttachment,
    WidgetConversation,
    WidgetMessage,
)
from app.webchat.visitor import Visitor

_CONVERSATION = (
    "SELECT id, state, contact_id, agent_id, created_at, last_message_at, resolved_at "
    "FROM conversations WHERE tenant_id = $1 "
)
# Outbound messages the visitor's read receipt may move on (not queued, failed or read).
_READABLE = ("sent", "delivered")


async def owned(
    conn: asyncpg.Connection, visitor: Visitor, conversation_id: uuid.UUID, *, lock: bool = False
) -> asyncpg.Record:
    """The visitor's conversation (locked with ``lock``), else 404."""
    row = await conn.fetchrow(
        _CONVERSATION
        + "AND id = $2 AND customer_id = $3 AND identity_id = $4"
        + (" FOR UPDATE" if lock else ""),
        visitor.scope.tenant_id,
        conversation_id,
        visitor.customer_id,
        visitor.identity_id,
    )
    if row is None:
        raise conversation_not_found()
    return row


async def latest_open(conn: asyncpg.Connection, visitor: Visitor) -> asyncpg.Record | None:
    """The visitor's unresolved conversation on this channel, if any (the newest)."""
    return await conn.fetchrow(
        _CONVERSATION + "AND customer_id = $2 AND identity_id = $3 AND channel_id = $4 "
        "AND state <> 'resolved' ORDER BY updated_at DESC LIMIT 1",
        visitor.scope.tenant_id,
        visitor.customer_id,
        visitor.identity_id,
        visitor.channel.id,
    )


async def queue_place(
    conn: asyncpg.Connection, scope: TenantScope, state: str, contact_id: uuid.UUID | None
) -> tuple[int | None, float | None]:
    """Place in line and estimated wait while the conversation is queued."""
    if state != "queued" or contact_id is None:
        return None, None
    contact = await conn.fetchrow(
        "SELECT state, queue_id, priority, enqueued_at FROM contacts "
        "WHERE tenant_id = $1 AND id = $2",
        scope.tenant_id,
        contact_id,
    )
    if contact is None:
        return None, None
    return await position_and_wait(conn, scope, contact)


async def agent_names(
    conn: asyncpg.Connection, scope: TenantScope, ids: set[uuid.UUID]
) -> dict[uuid.UUID, str]:
    if not ids:
        return {}
    rows = await conn.fetch(
        "SELECT id, display_name FROM agents WHERE tenant_id = $1 AND id = ANY($2::uuid[])",
        scope.tenant_id,
        list(ids),
    )
    return {r["id"]: r["display_name"] for r in rows}


async def conversation_view(
    conn: asyncpg.Connection, scope: TenantScope, row: asyncpg.Record
) -> WidgetConversation:
    position, wait = await queue_place(conn, scope, row["state"], row["contact_id"])
    agent = None
    if row["agent_id"] is not None and row["state"] != "queued":
        names = await agent_names(conn, scope, {row["agent_id"]})
        if row["agent_id"] in names:
            agent = AgentInfo(display_name=names[row["agent_id"]])
    return WidgetConversation(
        id=row["id"],
        state=row["state"],
        position=position,
        estimated_wait_seconds=wait,
        agent=agent,
        created_at=row["created_at"],
        last_message_at=row["last_message_at"],
        resolved_at=row["resolved_at"],
    )


def widget_message(data: dict[str, Any], names: dict[uuid.UUID, str]) -> WidgetMessage | None:
    """A message as the visitor sees it (a row or a ``message.created`` payload); None
    for an internal note."""
    if data.get("direction") not in ("inbound", "outbound"):
        return None
    agent = data.get("agent_id")
    agent_id = uuid.UUID(str(agent)) if agent else None
    return WidgetMessage(
        id=data["id"],
        conversation_id=data["conversation_id"],
        direction=data["direction"],
        sender_kind=data["sender_kind"],
        agent_name=names.get(agent_id) if agent_id else None,
        body=data["body"],
        attachments=[
            WidgetAttachment.model_validate(a) for a in decode_json(data["attachments"]) or []
        ],
        status=data["status"],
        client_message_id=data.get("client_message_id"),
        created_at=data["created_at"],
        read_at=data.get("read_at"),
    )


async def message_view(
    conn: asyncpg.Connection, scope: TenantScope, message_id: uuid.UUID
) -> WidgetMessage:
    row = await conn.fetchrow(
        f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE tenant_id = $1 AND id = $2",  # noqa: S608
        scope.tenant_id,
        message_id,
    )
    if row is None:
        raise NotFound("No such message.", code="message-not-found")
    names = await agent_names(conn, scope, {row["agent_id"]} if row["agent_id"] else set())
    view = widget_message(dict(row), names)
    if view is None:
        raise NotFound("No such message.", code="message-not-found")
    return view


def _check_text(text: str, attachment_ids: list[uuid.UUID]) -> None:
    if not text.strip() and not attachment_ids:
        raise InvalidInput("body.text: must not be blank without attachments", field="body.text")


# -- chats and messages -------------------------------------------------------------------


async def start_chat(
    session: AsyncSession,
    visitor: Visitor,
    store: ObjectStore,
    *,
    text: str,
    client_message_id: str | None,
    attachment_ids: list[uuid.UUID],
    before_open: Callable[[], Awaitable[None]],
    attributes: dict[str, Any] | None = None,
) -> tuple[ChatStarted, bool]:
    """The visitor's first message: opens a conversation (routed to the channel's queue
    or flow) unless one is still open, where it goes instead. ``before_open`` runs
    before a new conversation is opened (the abuse limit). True when it was opened."""
    _check_text(text, attachment_ids)
    conn = await raw(session)
    scope = visitor.scope
    # One start at a time per visitor: two tabs do not open two conversations.
    await conn.execute(
        "SELECT 1 FROM customer_identities WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
        scope.tenant_id,
        visitor.identity_id,
    )
    if client_message_id:
        sent = await conn.fetchrow(
            "SELECT m.id, m.conversation_id FROM messages m JOIN conversations c "
            "ON c.tenant_id = m.tenant_id AND c.id = m.conversation_id "
            "WHERE m.tenant_id = $1 AND c.customer_id = $2 AND c.identity_id = $3 "
            "AND m.client_message_id = $4 AND m.direction = 'inbound' LIMIT 1",
            scope.tenant_id,
            visitor.customer_id,
            visitor.identity_id,
            client_message_id,
        )
        if sent is not None:
            return await _started(conn, visitor, sent["conversation_id"], sent["id"]), False
    current = await latest_open(conn, visitor)
    opened = current is None
    if current is None:
        await before_open()
        current = await open_conversation(
            conn,
            scope,
            channel=visitor.channel,
            identity=visitor.identity(),
            subject=None,
            at=utcnow(),
            attributes=attributes,
        )
    content = InboundContent(
        text=text, client_message_id=client_message_id, attachment_ids=attachment_ids
    )
    got = await _receive(session, visitor, store, current["id"], content)
    started = await _started(conn, visitor, got.conversation_id, got.message_id, got.message)
    return started, opened


async def _started(
    conn: asyncpg.Connection,
    visitor: Visitor,
    conversation_id: uuid.UUID,
    message_id: uuid.UUID,
    written: MessageRead | None = None,
) -> ChatStarted:
    row = await owned(conn, visitor, conversation_id)
    return ChatStarted(
        conversation=await conversation_view(conn, visitor.scope, row),
        message=await _message_of(conn, visitor, message_id, written),
    )


async def _message_of(
    conn: asyncpg.Connection, visitor: Visitor, message_id: uuid.UUID, written: MessageRead | None
) -> WidgetMessage:
    """The visitor's message as just written (receive() returns it), else read (a
    duplicate: the first one)."""
    if written is not None:
        view = widget_message(written.model_dump(), {})  # the customer's: no agent name
        if view is not None:
            return view
    return await message_view(conn, visitor.scope, message_id)


async def post_message(
    session: AsyncSession,
    visitor: Visitor,
    store: ObjectStore,
    conversation_id: uuid.UUID,
    *,
    text: str,
    client_message_id: str,
    attachment_ids: list[uuid.UUID],
    locked: bool = False,
) -> MessagePosted:
    """A message in the visitor's conversation (a resolved one opens again). Sent again
    with the same ``client_message_id``, the first one is answered, nothing doubles.

    ``locked``: the caller found the conversation to be the visitor's and holds its lock
    in this transaction (app/webchat/auth.py ``current_visitor_holding``)."""
    _check_text(text, attachment_ids)
    conn = await raw(session)
    if not locked:
        # Locked first: two resends of one message queue here, and receive()'s duplicate
        # check, a later statement (a newer snapshot), finds the first.
        await owned(conn, visitor, conversation_id, lock=True)
    content = InboundContent(
        text=text, client_message_id=client_message_id, attachment_ids=attachment_ids
    )
    got = await _receive(session, visitor, store, conversation_id, content)
    message = await _message_of(conn, visitor, got.message_id, got.message)
    return MessagePosted(message=message, duplicate=got.duplicate)


async def _receive(
    session: AsyncSession,
    visitor: Visitor,
    store: ObjectStore,
    conversation_id: uuid.UUID,
    content: InboundContent,
) -> Received:
    """The visitor's message into their conversation, as any channel's inbound one."""
    return await receive(
        session,
        visitor.scope,
        visitor.plan,
        channel=visitor.channel,
        identity=visitor.identity(),
        content=content,
        store=store,
        conversation_id=conversation_id,
    )


async def list_messages(
    conn: asyncpg.Connection, visitor: Visitor, conversation_id: uuid.UUID, page: PageParams
) -> MessagePage:
    """The conversation's messages, newest first, internal notes left out."""
    await owned(conn, visitor, conversation_id)
    rows = await conn.fetch(
        f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE tenant_id = $1 "  # noqa: S608
        "AND conversation_id = $2 AND direction <> 'internal' "
        "AND ($3::uuid IS NULL OR id < $3) ORDER BY id DESC LIMIT $4",
        visitor.scope.tenant_id,
        conversation_id,
        page.after_id,
        page.limit + 1,
    )
    shown, next_cursor = page_rows(rows, page.limit, key=lambda r: r["id"])
    names = await agent_names(
        conn, visitor.scope, {r["agent_id"] for r in shown if r["agent_id"] is not None}
    )
    items = [m for r in shown if (m := widget_message(dict(r), names))]
    return MessagePage(items=items, next_cursor=next_cursor)


async def mark_read(
    conn: asyncpg.Connection, visitor: Visitor, conversation_id: uuid.UUID, message_id: uuid.UUID
) -> int:
    """The visitor has read up to ``message_id``: the agents' messages up to it become
    ``read`` (each announced as ``message.status``). Returns how many changed."""
    scope = visitor.scope
    await owned(conn, visitor, conversation_id, lock=True)
    upto = await conn.fetchrow(
        "SELECT id, created_at FROM messages WHERE tenant_id = $1 AND id = $2 "
        "AND conversation_id = $3 AND direction <> 'internal'",
        scope.tenant_id,
        message_id,
        conversation_id,
    )
    if upto is None:
        raise InvalidInput(
            "body.message_id: no such message in this conversation",
            code="unknown-reference",
            field="body.message_id",
        )
    now = utcnow()
    changed = await conn.fetch(
        "UPDATE messages SET status = 'read', read_at = coalesce(read_at, $5) "
        "WHERE tenant_id = $1 AND conversation_id = $2 AND direction = 'outbound' "
        "AND status = ANY($6::text[]) AND (created_at, id) <= ($3, $4) RETURNING id",
        scope.tenant_id,
        conversation_id,
        upto["created_at"],
        upto["id"],
        now,
        list(_READABLE),
    )
    for row in sorted(changed, key=lambda r: r["id"]):
        await post_event(
            conn,
            scope,
            conversation_id,
            "message.status",
            {"message_id": str(row["id"]), "status": "read", "at": now.isoformat()},
        )
    return len(changed)


async def typing(
    conn: asyncpg.Connection,
    visitor: Visitor,
    conversation_id: uuid.UUID,
    state: Literal["typing", "paused"],
) -> int:
    """The visitor is typing (or stopped): an event for everyone in the conversation."""
    await owned(conn, visitor, conversation_id, lock=True)
    return await post_event(
        conn,
        visitor.scope,
        conversation_id,
        "typing",
        # The shape of an agent's typing event (app/conversations/actions.py).
        {"from": "customer", "typing": state == "typing"},
    )


# -- attachments --------------------------------------------------------------------------


async def new_upload(
    conn: asyncpg.Connection,
    visitor: Visitor,
    store: ObjectStore,
    settings: Settings,
    conversation_id: uuid.UUID,
    body: UploadCreate,
) -> UploadGrant:
    """A file the visitor is about to send: a pending attachment and a presigned upload
    for exactly that type and at most that size (the message that names it checks what
    arrived)."""
    await owned(conn, visitor, conversation_id)
    return await grant_upload(
        conn, store, settings, visitor.scope, conversation_id, body, uploaded_by="customer"
    )


async def download_url(
    conn: asyncpg.Connection,
    visitor: Visitor,
    store: ObjectStore,
    settings: Settings,
    attachment_id: uuid.UUID,
) -> str:
    """A presigned download of a file sent in one of the visitor's conversations (not
    one on an internal note, not one still being uploaded)."""
    row = await conn.fetchrow(
        "SELECT a.object_key, a.filename, a.etag FROM attachments a "
        "JOIN conversations c ON c.tenant_id = a.tenant_id AND c.id = a.conversation_id "
        "JOIN messages m ON m.tenant_id = a.tenant_id AND m.id = a.message_id "
        "WHERE a.tenant_id = $1 AND a.id = $2 AND a.status = 'stored' "
        "AND c.customer_id = $3 AND c.identity_id = $4 AND m.direction <> 'internal'",
        visitor.scope.tenant_id,
        attachment_id,
        visitor.customer_id,
        visitor.identity_id,
    )
    if row is None:
        raise NotFound("No such attachment.", code="attachment-not-found")
    await check_unchanged(store, row["object_key"], row["etag"])
    return await store.presign_download(
        row["object_key"],
        expires_seconds=min(settings.storage_presign_seconds, 300),
        filename=row["filename"],
    )


async def end_chat(
    session: AsyncSession, visitor: Visitor, conversation_id: uuid.UUID
) -> WidgetConversation:
    """The visitor closes the chat. Still waiting: the contact is abandoned (its wait
    kept for the metrics) and the conversation resolved. With an agent: the agent is
    told (``customer.left``) and wraps up as usual. Already ended: nothing changes."""
    from app.customers.service import add_timeline
    from app.routing.contacts import abandon, get_row
    from app.routing.transitions import dumps

    conn = await raw(session)
    scope = visitor.scope
    row = await owned(conn, visitor, conversation_id, lock=True)
    now = utcnow()
    state = row["state"]
    waiting = state in ("queued", "open")
    if state == "queued" and row["contact_id"] is not None:
        contact = await get_row(conn, scope, row["contact_id"])
        if contact["state"] in ("queued", "offered"):
            await abandon(session, scope, row["contact_id"])
        else:
            waiting = False  # an agent took it meanwhile: treat as assigned
    if waiting:
        await conn.execute(
            "UPDATE conversations SET state = 'resolved', resolved_at = $3, "
            "attributes = attributes || $4::jsonb, updated_at = $3, version = version + 1 "
            "WHERE tenant_id = $1 AND id = $2",
            scope.tenant_id,
            conversation_id,
            now,
            dumps({"ended_by": "customer"}),
        )
        kind, topic = "conversation.abandoned", "conversation.ended"
    elif state in ("queued", "assigned"):
        kind, topic = "customer.left", "customer.left"
    else:
        return await conversation_view(conn, scope, await owned(conn, visitor, conversation_id))
    await add_timeline(
        conn,
        scope,
        customer_id=visitor.customer_id,
        identity_id=visitor.identity_id,
        kind=kind,
        at=now,
        conversation_id=conversation_id,
        channel="webchat",
        ref_id=conversation_id,
    )
    await post_event(conn, scope, conversation_id, topic, {"by": "customer"})
    return await conversation_view(conn, scope, await owned(conn, visitor, conversation_id))
