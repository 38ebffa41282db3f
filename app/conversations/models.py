"""Conversations: one customer's thread across channels, its messages (with their
attachments), its participants (customer, agents, bots, supervisors) and the event log
the customer's and the agents' streams read."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKeyConstraint,
    Identity,
    Index,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from app.db.base import utcnow
from app.db.mixins import TenantOwned, Versioned


def _ts(nullable: bool = True) -> Any:
    return Field(default=None, sa_type=DateTime(timezone=True), nullable=nullable)  # type: ignore[call-overload]


def _customer_fk(table: str) -> ForeignKeyConstraint:
    return ForeignKeyConstraint(
        ["tenant_id", "customer_id"],
        ["customers.tenant_id", "customers.id"],
        name=f"fk_{table}_customer",
    )


def _conversation_fk(table: str) -> ForeignKeyConstraint:
    return ForeignKeyConstraint(
        ["tenant_id", "conversation_id"],
        ["conversations.tenant_id", "conversations.id"],
        name=f"fk_{table}_conversation",
        ondelete="CASCADE",
    )


class Conversation(TenantOwned, Versioned, table=True):
    """One customer's thread. ``channel_id`` is the channel of the latest customer
    message (replies go there unless the agent switches channel)."""

    __tablename__ = "conversations"

    customer_id: uuid.UUID
    identity_id: uuid.UUID | None = None  # the identity it was opened through (splits)
    channel: str = Field(max_length=16)  # webchat | email | sms | whatsapp | wechat | messenger
    channel_id: uuid.UUID
    state: str = Field(default="open", max_length=20)
    subject: str | None = Field(default=None, max_length=300)
    queue_id: uuid.UUID | None = None
    contact_id: uuid.UUID | None = None  # the routing contact now in play
    transfer_contact_id: uuid.UUID | None = None  # a warm transfer waiting for its agent
    agent_id: uuid.UUID | None = None  # the owning agent
    wrap_up_code: str | None = Field(default=None, max_length=64)
    attributes: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSONB, nullable=False)
    )
    last_message_at: datetime | None = _ts()
    resolved_at: datetime | None = _ts()

    __table_args__ = (
        _customer_fk("conversations"),
        ForeignKeyConstraint(
            ["tenant_id", "channel_id"],
            ["channels.tenant_id", "channels.id"],
            name="fk_conversations_channel",
        ),
        CheckConstraint(
            "state IN ('open', 'queued', 'assigned', 'pending_customer', 'resolved')",
            name="state_known",
        ),
        Index(
            "ix_conversations_tenant_id_customer_id_updated_at",
            "tenant_id",
            "customer_id",
            "updated_at",
        ),
        Index("ix_conversations_tenant_id_contact_id", "tenant_id", "contact_id"),
        Index("ix_conversations_tenant_id_state_updated_at", "tenant_id", "state", "updated_at"),
    )


class ConversationParticipant(TenantOwned, table=True):
    """Who is in the conversation: the customer, agents (owner or consulted), bots and
    supervisors (read only)."""

    __tablename__ = "conversation_participants"

    conversation_id: uuid.UUID
    kind: str = Field(max_length=16)  # customer | agent | bot | supervisor
    role: str = Field(max_length=16)  # customer | owner | consult | monitor | bot
    state: str = Field(default="active", max_length=16)  # invited | active | left
    agent_id: uuid.UUID | None = None  # agents
    user_id: uuid.UUID | None = None  # supervisors
    name: str | None = Field(default=None, max_length=200)
    invited_by: uuid.UUID | None = None
    joined_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    left_at: datetime | None = _ts()

    __table_args__ = (
        _conversation_fk("conversation_participants"),
        CheckConstraint("kind IN ('customer', 'agent', 'bot', 'supervisor')", name="kind_known"),
        CheckConstraint("state IN ('invited', 'active', 'left')", name="state_known"),
        Index(
            "ix_conversation_participants_live_agent",
            "tenant_id",
            "conversation_id",
            "agent_id",
            unique=True,
            postgresql_where=text("agent_id IS NOT NULL AND state <> 'left'"),
        ),
        Index(
            "ix_conversation_participants_live_user",
            "tenant_id",
            "conversation_id",
            "user_id",
            unique=True,
            postgresql_where=text("user_id IS NOT NULL AND state <> 'left'"),
        ),
        Index(
            "ix_conversation_participants_tenant_id_agent_id",
            "tenant_id",
            "agent_id",
            postgresql_where=text("state <> 'left'"),
        ),
    )


class Message(TenantOwned, table=True):
    """A message of the conversation: inbound (customer), outbound (agent or bot, on a
    channel) or internal (an agents-only note)."""

    __tablename__ = "messages"

    conversation_id: uuid.UUID
    customer_id: uuid.UUID
    direction: str = Field(max_length=16)  # inbound | outbound | internal
    sender_kind: str = Field(max_length=16)  # customer | agent | bot | system
    agent_id: uuid.UUID | None = None
    channel: str = Field(max_length=16)
    channel_id: uuid.UUID | None = None
    body: str = Field(sa_column=Column(Text, nullable=False))
    attachments: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSONB, nullable=False)
    )
    status: str = Field(max_length=16)
    # Outbound: the customer's address; inbound: ours that the customer wrote to.
    to_address: str | None = Field(default=None, max_length=254)
    provider_message_id: str | None = Field(default=None, max_length=200)
    client_message_id: str | None = Field(default=None, max_length=100)
    email_message_id: str | None = Field(default=None, max_length=300)
    email_in_reply_to: str | None = Field(default=None, max_length=300)
    email_references: list[str] = Field(
        default_factory=list, sa_column=Column(JSONB, nullable=False)
    )
    subject: str | None = Field(default=None, max_length=300)
    # Outbound WhatsApp: the approved template sent instead of free text (name,
    # language, parameters); ``body`` holds a readable rendering of it.
    template: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB, nullable=True))
    error: str | None = Field(default=None, max_length=500)
    attempts: int = 0
    # Outbound: not before this time (a delivery in flight holds it as a lease; a
    # transient failure backs it off).
    next_attempt_at: datetime | None = _ts()
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    sent_at: datetime | None = _ts()
    delivered_at: datetime | None = _ts()
    read_at: datetime | None = _ts()

    __table_args__ = (
        _conversation_fk("messages"),
        CheckConstraint("direction IN ('inbound', 'outbound', 'internal')", name="direction_known"),
        CheckConstraint(
            "status IN ('received', 'queued', 'sent', 'delivered', 'read', 'failed')",
            name="status_known",
        ),
        Index(
            "ix_messages_tenant_id_conversation_id_created_at",
            "tenant_id",
            "conversation_id",
            "created_at",
            "id",
        ),
        # A provider's retried or replayed webhook is the same message.
        Index(
            "ix_messages_provider_message_id",
            "tenant_id",
            "channel_id",
            "provider_message_id",
            unique=True,
            postgresql_where=text("provider_message_id IS NOT NULL"),
        ),
        Index(
            "ix_messages_client_message_id",
            "tenant_id",
            "conversation_id",
            "client_message_id",
            unique=True,
            postgresql_where=text("client_message_id IS NOT NULL"),
        ),
        Index(
            "ix_messages_tenant_id_email_message_id",
            "tenant_id",
            "email_message_id",
            postgresql_where=text("email_message_id IS NOT NULL"),
        ),
        Index(
            "ix_messages_outbound_queued",
            "tenant_id",
            "created_at",
            postgresql_where=text("status = 'queued'"),
        ),
    )


class Attachment(TenantOwned, table=True):
    """A file in object storage, uploaded for a conversation (presigned, or taken from
    an email). ``pending`` until its upload is checked; then ``stored``."""

    __tablename__ = "attachments"

    conversation_id: uuid.UUID
    message_id: uuid.UUID | None = None
    object_key: str = Field(max_length=500)
    filename: str = Field(max_length=255)
    content_type: str = Field(max_length=100)
    size_bytes: int | None = None
    max_bytes: int
    status: str = Field(default="pending", max_length=16)  # pending | stored
    uploaded_by: str = Field(max_length=16)  # customer | agent | email | provider
    # The object's ETag when a message took a presigned upload: the URL could write the
    # key again until it expires, and a replaced file is not served (None: stored by us).
    etag: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]

    __table_args__ = (
        _conversation_fk("attachments"),
        CheckConstraint("status IN ('pending', 'stored')", name="status_known"),
        Index("ix_attachments_tenant_id_conversation_id", "tenant_id", "conversation_id"),
    )


class ConversationEvent(SQLModel, table=True):
    """The conversation's event log (ordered by id): what the customer's stream sends
    and replays after a dropped connection. ``audience`` = all | agents."""

    __tablename__ = "conversation_events"

    tenant_id: uuid.UUID = Field(primary_key=True)
    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger, Identity(always=True), primary_key=True),
    )
    conversation_id: uuid.UUID
    topic: str = Field(max_length=64)
    audience: str = Field(default="all", max_length=16)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]

    __table_args__ = (
        _conversation_fk("conversation_events"),
        Index(
            "ix_conversation_events_tenant_id_conversation_id_id",
            "tenant_id",
            "conversation_id",
            "id",
        ),
    )


class OutboundWork(SQLModel, table=True):
    """Platform table: tenants with outbound messages still to deliver, and when to look
    again (a crash between commit and delivery, a provider's transient failure). The
    sweeper reads it across tenants; the messages themselves stay under RLS."""

    __tablename__ = "outbound_work"

    tenant_id: uuid.UUID = Field(primary_key=True)
    due_at: datetime = Field(sa_type=DateTime(timezone=True))  # type: ignore[call-overload]

    __table_args__ = (Index("ix_outbound_work_due_at", "due_at"),)
