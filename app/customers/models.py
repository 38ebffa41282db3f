"""Customers: one profile per person per tenant, reached through identities (a phone
number, an email address, a web chat visitor id, a WhatsApp, WeChat or Messenger id),
with consent per channel, a record of merges and splits, and a timeline."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, Column, DateTime, ForeignKeyConstraint, Index, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from app.db.base import utcnow
from app.db.mixins import TenantOwned, Versioned


def _ts(nullable: bool = True) -> Any:
    return Field(default=None, sa_type=DateTime(timezone=True), nullable=nullable)  # type: ignore[call-overload]


class Customer(TenantOwned, Versioned, table=True):
    """A person the tenant serves. A merged profile stays, pointing at the survivor."""

    __tablename__ = "customers"

    display_name: str | None = Field(default=None, max_length=200)
    attributes: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSONB, nullable=False)
    )
    timezone: str | None = Field(default=None, max_length=64)  # IANA, for quiet hours
    language: str | None = Field(default=None, max_length=16)
    merged_into_id: uuid.UUID | None = None
    last_seen_at: datetime | None = _ts()

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "merged_into_id"],
            ["customers.tenant_id", "customers.id"],
            name="fk_customers_merged_into",
        ),
        # Profiles merged into a survivor (timelines follow them).
        Index(
            "ix_customers_tenant_id_merged_into_id",
            "tenant_id",
            "merged_into_id",
            postgresql_where=text("merged_into_id IS NOT NULL"),
        ),
        Index(
            "ix_customers_tenant_id_updated_at",
            "tenant_id",
            "updated_at",
            postgresql_where=text("merged_into_id IS NULL"),
        ),
    )


class CustomerIdentity(TenantOwned, table=True):
    """How the customer reaches the tenant; unique per tenant, kind and value."""

    __tablename__ = "customer_identities"

    customer_id: uuid.UUID
    kind: str = Field(max_length=16)
    value: str = Field(max_length=254)  # normalised: E.164, lower-case email, ...
    verified: bool = False
    bounced_at: datetime | None = _ts()  # email: a permanent bounce marks the address
    bounce_reason: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    last_seen_at: datetime | None = _ts()

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "customer_id"],
            ["customers.tenant_id", "customers.id"],
            name="fk_customer_identities_customer",
            ondelete="CASCADE",
        ),
        CheckConstraint(
            "kind IN ('phone', 'email', 'webchat', 'whatsapp', 'wechat', 'messenger')",
            name="kind_known",
        ),
        Index(
            "ix_customer_identities_tenant_id_kind_value", "tenant_id", "kind", "value", unique=True
        ),
        Index("ix_customer_identities_tenant_id_customer_id", "tenant_id", "customer_id"),
    )


class CustomerConsent(SQLModel, table=True):
    """Whether the tenant may contact the customer on a channel on its own initiative."""

    __tablename__ = "customer_consents"

    tenant_id: uuid.UUID = Field(primary_key=True)
    customer_id: uuid.UUID = Field(primary_key=True)
    channel: str = Field(primary_key=True, max_length=16)
    status: str = Field(max_length=16)  # granted | revoked
    source: str | None = Field(default=None, max_length=200)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "customer_id"],
            ["customers.tenant_id", "customers.id"],
            name="fk_customer_consents_customer",
            ondelete="CASCADE",
        ),
        CheckConstraint("status IN ('granted', 'revoked')", name="status_known"),
    )


class CustomerChange(TenantOwned, table=True):
    """The audit trail of a profile: merges, splits, identities added or moved."""

    __tablename__ = "customer_changes"

    customer_id: uuid.UUID
    kind: str = Field(max_length=32)  # merged | absorbed | split | split_from | ...
    other_customer_id: uuid.UUID | None = None
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    actor_type: str = Field(max_length=16)
    actor_id: str | None = Field(default=None, max_length=64)
    at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]

    __table_args__ = (
        Index("ix_customer_changes_tenant_id_customer_id_at", "tenant_id", "customer_id", "at"),
    )


class TimelineEvent(TenantOwned, table=True):
    """One interaction on the customer's timeline, written with the interaction itself.

    ``identity_id`` is the identity it came through, so a split can take it along."""

    __tablename__ = "timeline_events"

    customer_id: uuid.UUID
    identity_id: uuid.UUID | None = None
    at: datetime = Field(sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    kind: str = Field(max_length=32)
    channel: str | None = Field(default=None, max_length=16)
    conversation_id: uuid.UUID | None = None
    ref_id: uuid.UUID | None = None
    summary: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))

    __table_args__ = (
        Index(
            "ix_timeline_events_tenant_id_customer_id_at", "tenant_id", "customer_id", "at", "id"
        ),
        Index("ix_timeline_events_tenant_id_conversation_id", "tenant_id", "conversation_id"),
    )
