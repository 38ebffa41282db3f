"""Conversation and message bodies (what agents, the widget and the API see)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

import asyncpg
from pydantic import BaseModel

from app.routing.snapshots import decode_json

ConversationState = Literal["open", "queued", "assigned", "pending_customer", "resolved"]
MessageStatus = Literal["received", "queued", "sent", "delivered", "read", "failed"]


class AttachmentRef(BaseModel):
    attachment_id: uuid.UUID
    filename: str
    content_type: str
    size_bytes: int | None = None


class MessageRead(BaseModel):
    id: uuid.UUID
    conversation_id: uuid.UUID
    direction: Literal["inbound", "outbound", "internal"]
    sender_kind: Literal["customer", "agent", "bot", "system"]
    agent_id: uuid.UUID | None
    channel: str
    channel_id: uuid.UUID | None
    body: str
    attachments: list[AttachmentRef]
    status: MessageStatus
    subject: str | None
    client_message_id: str | None
    created_at: datetime
    sent_at: datetime | None
    delivered_at: datetime | None
    read_at: datetime | None
    error: str | None


class ConversationRead(BaseModel):
    id: uuid.UUID
    customer_id: uuid.UUID
    channel: str
    channel_id: uuid.UUID
    state: ConversationState
    subject: str | None
    queue_id: uuid.UUID | None
    contact_id: uuid.UUID | None
    agent_id: uuid.UUID | None
    wrap_up_code: str | None
    attributes: dict[str, Any]
    last_message_at: datetime | None
    resolved_at: datetime | None
    created_at: datetime
    updated_at: datetime
    version: int


MESSAGE_COLUMNS = (
    "id, conversation_id, direction, sender_kind, agent_id, channel, channel_id, body, "
    "attachments, status, subject, client_message_id, created_at, sent_at, delivered_at, "
    "read_at, error"
)
CONVERSATION_COLUMNS = (
    "id, customer_id, channel, channel_id, state, subject, queue_id, contact_id, agent_id, "
    "wrap_up_code, attributes, last_message_at, resolved_at, created_at, updated_at, version"
)


def message_read(row: asyncpg.Record) -> MessageRead:
    data = dict(row)
    data["attachments"] = decode_json(data["attachments"])
    return MessageRead.model_validate(data)


def conversation_read(row: asyncpg.Record) -> ConversationRead:
    data = dict(row)
    data["attributes"] = decode_json(data["attributes"])
    return ConversationRead.model_validate(data)
