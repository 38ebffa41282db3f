"""Column sets shared by tenant-owned tables."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime
from sqlmodel import Field, SQLModel

from app.db.base import utcnow, uuid7


class TenantOwned(SQLModel):
    """Primary key (tenant_id, id): tenant_id leads every key, for RLS and for Citus."""

    tenant_id: uuid.UUID = Field(foreign_key="tenants.id", primary_key=True, ondelete="CASCADE")
    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)


class Versioned(SQLModel):
    """A version for ETag / If-Match, and creation and update times."""

    version: int = Field(default=1)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    updated_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
