"""Routing tables: contacts waiting and served, agents' presence, reservations (offers),
the decision trail, the outbox, and the platform's shard leases.

Tenant tables carry ``shard`` (a function of the tenant, see ``app.routing.shards``) so
the routing workers' policy and indexes can select a shard's rows without a join.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKeyConstraint,
    Identity,
    Index,
    SmallInteger,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from app.db.base import utcnow, uuid7
from app.db.mixins import TenantOwned, Versioned

CONTACT_STATES = ("queued", "offered", "in_progress", "wrap_up", "completed", "abandoned")
RESERVATION_STATES = (
    "offered",
    "in_progress",
    "wrap_up",
    "completed",
    "rejected",
    "timed_out",
    "rescinded",
)
LIVE_RESERVATION_STATES = ("offered", "in_progress", "wrap_up")
PRESENCE_STATUSES = ("offline", "available", "break")


def _ts(nullable: bool = True) -> Any:
    return Field(default=None, sa_type=DateTime(timezone=True), nullable=nullable)  # type: ignore[call-overload]


class Contact(TenantOwned, Versioned, table=True):
    """A work item of any channel: waits in a queue, is offered, served, wrapped up."""

    __tablename__ = "contacts"

    shard: int = Field(sa_type=SmallInteger)
    channel: str = Field(max_length=16)
    queue_id: uuid.UUID
    original_queue_id: uuid.UUID
    customer_ref: str | None = Field(default=None, max_length=200)
    priority: int = 5  # 1 is most urgent
    state: str = Field(default="queued", max_length=16)
    mode: str = Field(default="live", max_length=16)  # live | callback
    callback_number: str | None = Field(default=None, max_length=32)
    extra_skills: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSONB, nullable=False)
    )
    attributes: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSONB, nullable=False)
    )
    preferred_agent_ids: list[uuid.UUID] = Field(
        default_factory=list, sa_column=Column(ARRAY(Uuid()), nullable=False)
    )
    sticky_agent_id: uuid.UUID | None = None
    declined_by: uuid.UUID | None = None
    declined_at: datetime | None = _ts()
    agent_id: uuid.UUID | None = None
    enqueued_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    queue_entered_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    offered_at: datetime | None = _ts()
    answered_at: datetime | None = _ts()
    wrap_up_at: datetime | None = _ts()
    completed_at: datetime | None = _ts()
    abandoned_at: datetime | None = _ts()
    wait_seconds: float | None = None
    missed_offers: int = 0
    wrap_up_code: str | None = Field(default=None, max_length=64)
    # The conversation this contact routes (messaging channels), if any.
    conversation_id: uuid.UUID | None = None

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "queue_id"],
            ["queues.tenant_id", "queues.id"],
            name="fk_contacts_queue",
            ondelete="RESTRICT",
        ),
        CheckConstraint(
            "state IN ('queued', 'offered', 'in_progress', 'wrap_up', 'completed', 'abandoned')",
            name="state_known",
        ),
        CheckConstraint("mode IN ('live', 'callback')", name="mode_known"),
        CheckConstraint("priority BETWEEN 1 AND 10", name="priority_range"),
        # The router's read: a shard's waiting contacts, in line order.
        Index(
            "ix_contacts_shard_waiting",
            "shard",
            "tenant_id",
            "priority",
            "enqueued_at",
            postgresql_where=text("state = 'queued'"),
        ),
        Index(
            "ix_contacts_tenant_id_queue_id_waiting",
            "tenant_id",
            "queue_id",
            "priority",
            "enqueued_at",
            postgresql_where=text("state = 'queued'"),
        ),
        # Sticky agent: the customer's most recent served contact.
        Index(
            "ix_contacts_tenant_id_customer_ref",
            "tenant_id",
            "customer_ref",
            "answered_at",
            postgresql_where=text("customer_ref IS NOT NULL AND agent_id IS NOT NULL"),
        ),
        Index("ix_contacts_tenant_id_state_created_at", "tenant_id", "state", "created_at"),
        # A customer's calls and callbacks (timeline), and merges moving them.
        Index(
            "ix_contacts_tenant_id_customer_ref_enqueued_at",
            "tenant_id",
            "customer_ref",
            "enqueued_at",
            postgresql_where=text("customer_ref IS NOT NULL"),
        ),
    )


class AgentPresence(SQLModel, table=True):
    """An agent's routing state: status, capacity in points and what is in use."""

    __tablename__ = "agent_presence"

    tenant_id: uuid.UUID = Field(primary_key=True)
    agent_id: uuid.UUID = Field(primary_key=True)
    shard: int = Field(sa_type=SmallInteger)
    status: str = Field(default="offline", max_length=16)
    break_reason: str | None = Field(default=None, max_length=64)
    capacity_points: int = 100
    used_points: int = 0
    missed_offers: int = 0
    status_since: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    idle_since: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    heartbeat_expires_at: datetime | None = _ts()
    version: int = 1

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "agent_id"],
            ["agents.tenant_id", "agents.id"],
            name="fk_agent_presence_agent",
            ondelete="CASCADE",
        ),
        CheckConstraint("status IN ('offline', 'available', 'break')", name="status_known"),
        # The capacity guarantee, enforced by the database whatever the caller.
        CheckConstraint(
            "used_points >= 0 AND used_points <= capacity_points", name="within_capacity"
        ),
        Index(
            "ix_agent_presence_shard_available",
            "shard",
            "tenant_id",
            postgresql_where=text("status = 'available'"),
        ),
        Index(
            "ix_agent_presence_shard_heartbeat",
            "shard",
            "heartbeat_expires_at",
            postgresql_where=text("status <> 'offline'"),
        ),
    )


class Reservation(TenantOwned, table=True):
    """An offer of a contact to an agent, and the work that follows its acceptance."""

    __tablename__ = "reservations"

    shard: int = Field(sa_type=SmallInteger)
    contact_id: uuid.UUID
    agent_id: uuid.UUID
    queue_id: uuid.UUID
    channel: str = Field(max_length=16)
    points: int
    state: str = Field(default="offered", max_length=16)
    reason: str | None = Field(default=None, max_length=64)
    offered_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    offer_expires_at: datetime = Field(sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    accepted_at: datetime | None = _ts()
    wrap_up_at: datetime | None = _ts()
    wrap_up_expires_at: datetime | None = _ts()
    closed_at: datetime | None = _ts()
    why: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "contact_id"],
            ["contacts.tenant_id", "contacts.id"],
            name="fk_reservations_contact",
            ondelete="CASCADE",
        ),
        ForeignKeyConstraint(
            ["tenant_id", "agent_id"],
            ["agents.tenant_id", "agents.id"],
            name="fk_reservations_agent",
            ondelete="CASCADE",
        ),
        CheckConstraint(
            "state IN ('offered', 'in_progress', 'wrap_up', 'completed', 'rejected', "
            "'timed_out', 'rescinded')",
            name="state_known",
        ),
        # The guarantee: never two live offers (or live work) for one contact.
        Index(
            "ux_reservations_live_contact",
            "tenant_id",
            "contact_id",
            unique=True,
            postgresql_where=text("state IN ('offered', 'in_progress', 'wrap_up')"),
        ),
        Index(
            "ix_reservations_tenant_id_agent_id_live",
            "tenant_id",
            "agent_id",
            postgresql_where=text("state IN ('offered', 'in_progress', 'wrap_up')"),
        ),
        Index(
            "ix_reservations_shard_offer_expires_at",
            "shard",
            "offer_expires_at",
            postgresql_where=text("state = 'offered'"),
        ),
        Index(
            "ix_reservations_shard_wrap_up_expires_at",
            "shard",
            "wrap_up_expires_at",
            postgresql_where=text("state = 'wrap_up'"),
        ),
        Index("ix_reservations_tenant_id_contact_id", "tenant_id", "contact_id"),
    )


class RoutingEvent(SQLModel, table=True):
    """The decision trail of a contact: every step, offer and outcome, with why."""

    __tablename__ = "routing_events"

    tenant_id: uuid.UUID = Field(primary_key=True)
    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    shard: int = Field(sa_type=SmallInteger)
    contact_id: uuid.UUID
    agent_id: uuid.UUID | None = None
    kind: str = Field(max_length=32)
    at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "contact_id"],
            ["contacts.tenant_id", "contacts.id"],
            name="fk_routing_events_contact",
            ondelete="CASCADE",
        ),
        Index("ix_routing_events_tenant_id_contact_id", "tenant_id", "contact_id", "at"),
    )


class OutboxEvent(SQLModel, table=True):
    """A state change for subscribers, written in the transaction that made it."""

    __tablename__ = "outbox_events"

    tenant_id: uuid.UUID = Field(primary_key=True)
    id: int = Field(
        sa_column=Column(BigInteger, Identity(always=True), primary_key=True, nullable=False)
    )
    shard: int = Field(sa_type=SmallInteger)
    agent_id: uuid.UUID | None = None  # the agent it is for; None: tenant-wide
    topic: str = Field(max_length=64)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]

    __table_args__ = (
        Index("ix_outbox_events_tenant_id_agent_id_id", "tenant_id", "agent_id", "id"),
    )


# ---------------------------------------------------------------------------- platform


class RoutingShard(SQLModel, table=True):
    """A shard of the routing work and the worker holding its lease."""

    __tablename__ = "routing_shards"

    shard: int = Field(sa_type=SmallInteger, primary_key=True)
    owner: str | None = Field(default=None, max_length=100)
    lease_expires_at: datetime | None = _ts()
    epoch: int = Field(default=0, sa_type=BigInteger)


class RouterWorker(SQLModel, table=True):
    """A live routing worker (a heartbeat row); the count sets each one's fair share."""

    __tablename__ = "router_workers"

    id: str = Field(primary_key=True, max_length=100)
    host: str = Field(max_length=255)
    pid: int
    started_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    heartbeat_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]


class RoutingWork(SQLModel, table=True):
    """A tenant with routing work due: its next round is due at ``due_at``.

    Platform-level and content-free (ids and a time only), so that a worker can find the
    tenants of its shards without reading any tenant's rows.
    """

    __tablename__ = "routing_work"

    tenant_id: uuid.UUID = Field(primary_key=True)
    shard: int = Field(sa_type=SmallInteger)
    due_at: datetime | None = _ts()
    seq: int = Field(default=0, sa_type=BigInteger)  # bumped by every touch

    __table_args__ = (Index("ix_routing_work_shard_due_at", "shard", "due_at"),)
