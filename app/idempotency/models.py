from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Column, DateTime, ForeignKey, Index
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from app.db.base import utcnow


class IdempotencyKey(SQLModel, table=True):
    """The first answer to a POST carrying an Idempotency-Key, replayed to retries."""

    __tablename__ = "idempotency_keys"

    tenant_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    )
    key: str = Field(primary_key=True, max_length=200)
    fingerprint: str = Field(max_length=64)  # sha256 of method, path and body
    status_code: int | None = None  # None while the first request is in flight
    response: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB))
    headers: dict[str, str] | None = Field(default=None, sa_column=Column(JSONB))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )

    __table_args__ = (Index("ix_idempotency_keys_tenant_id_created_at", "tenant_id", "created_at"),)
