from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import Column, DateTime, ForeignKey, Index, String, text
from sqlmodel import Field, SQLModel

from app.db.base import utcnow, uuid7


class Role(enum.StrEnum):
    owner = "owner"
    admin = "admin"
    supervisor = "supervisor"
    agent = "agent"


class User(SQLModel, table=True):
    """A person who logs in to one tenant (tenant-owned, row-level secured)."""

    __tablename__ = "users"

    tenant_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    )
    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    email: str = Field(max_length=254)
    display_name: str | None = Field(default=None, max_length=200)
    role: str = Field(max_length=16)
    password_hash: str | None = Field(default=None, sa_column=Column(String(255)))
    status: str = Field(default="active", max_length=16)  # active | disabled
    email_verified_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True))
    )
    last_login_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )

    __table_args__ = (
        Index("ix_users_tenant_id_email", "tenant_id", text("lower(email)"), unique=True),
    )


class LoginEmail(SQLModel, table=True):
    """Platform index from a login email to its user: emails are unique across tenants,
    and login must find the tenant before row-level security can be engaged."""

    __tablename__ = "login_emails"

    email: str = Field(primary_key=True, max_length=254)  # stored lower-cased
    tenant_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False)
    )
    user_id: uuid.UUID
