"""Tenants: a platform table (not tenant-scoped), reached only through platform services."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import Column, DateTime, String
from sqlmodel import Field, SQLModel

from app.db.base import utcnow, uuid7


class TenantStatus(enum.StrEnum):
    trial = "trial"
    active = "active"
    suspended = "suspended"
    closed = "closed"


class Tenant(SQLModel, table=True):
    __tablename__ = "tenants"

    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    name: str = Field(max_length=200)
    slug: str = Field(max_length=63, unique=True)
    status: str = Field(default=TenantStatus.trial.value, max_length=16)
    plan: str = Field(default="trial", max_length=32)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    status_reason: str | None = Field(default=None, sa_column=Column(String(500)))
