"""Proactive engagement: the tenant's rules, and every decision to contact a customer or
hold back, with its reason."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, Column, DateTime, Index, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field

from app.db.base import utcnow
from app.db.mixins import TenantOwned, Versioned


class ProactiveRule(TenantOwned, Versioned, table=True):
    __tablename__ = "proactive_rules"

    name: str = Field(max_length=100)
    enabled: bool = True
    channel_id: uuid.UUID | None = None  # the web chat channel it applies to (None: all)
    conditions: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSONB, nullable=False)
    )
    action: str = Field(max_length=32)  # invite_chat | offer_callback
    message: str = Field(max_length=500)
    priority: int = 100  # lower first

    __table_args__ = (
        CheckConstraint("action IN ('invite_chat', 'offer_callback')", name="action_known"),
        Index("ix_proactive_rules_tenant_id_name", "tenant_id", text("lower(name)"), unique=True),
    )


class ProactiveDecision(TenantOwned, table=True):
    """``decision`` = contact | hold; ``reason`` says why (rule matched, frequency cap,
    quiet hours, no consent, ...). Contacts made count against the frequency cap."""

    __tablename__ = "proactive_decisions"

    customer_id: uuid.UUID
    rule_id: uuid.UUID | None = None
    channel: str = Field(max_length=16)
    decision: str = Field(max_length=16)
    reason: str = Field(max_length=64)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]

    __table_args__ = (
        CheckConstraint("decision IN ('contact', 'hold')", name="decision_known"),
        Index("ix_proactive_decisions_tenant_id_customer_id_at", "tenant_id", "customer_id", "at"),
    )
