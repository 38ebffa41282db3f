from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Column, DateTime, ForeignKey, Index
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from app.db.base import utcnow, uuid7


class AuditEvent(SQLModel, table=True):
    """Append-only record of every mutating request: who did what to which thing."""

    __tablename__ = "audit_events"

    tenant_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    )
    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    occurred_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    actor_type: str = Field(max_length=16)  # user | api_key | system
    actor_id: uuid.UUID | None = None
    action: str = Field(max_length=100)
    target_type: str | None = Field(default=None, max_length=50)
    target_id: str | None = Field(default=None, max_length=100)
    request_id: str | None = Field(default=None, max_length=64)
    client_address: str | None = Field(default=None, max_length=64)
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))

    __table_args__ = (Index("ix_audit_events_tenant_id_occurred_at", "tenant_id", "occurred_at"),)
