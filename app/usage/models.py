from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Column, DateTime, ForeignKey, Index, Numeric, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from app.db.base import utcnow, uuid7


class UsageEvent(SQLModel, table=True):
    """Append-only usage ledger, written in the business change's own transaction."""

    __tablename__ = "usage_events"

    tenant_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    )
    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    meter: str = Field(max_length=64)
    quantity: Decimal = Field(sa_column=Column(Numeric(20, 6), nullable=False))
    occurred_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    recorded_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    idempotency_key: str = Field(max_length=200)
    attributes: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSONB, nullable=False)
    )

    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key"),
        Index("ix_usage_events_tenant_id_meter_occurred_at", "tenant_id", "meter", "occurred_at"),
    )
