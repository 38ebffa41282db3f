from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ARRAY, Column, DateTime, ForeignKey, String
from sqlmodel import Field, SQLModel

from app.db.base import utcnow, uuid7


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"

    tenant_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    )
    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    name: str = Field(max_length=100)
    prefix: str = Field(max_length=32)  # the visible part, shown in listings
    secret_hash: str = Field(max_length=128)
    scopes: list[str] = Field(sa_column=Column(ARRAY(String(64)), nullable=False))
    role: str = Field(max_length=16)  # the role whose scopes bound this key
    created_by: uuid.UUID | None = None
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    expires_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    last_used_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
