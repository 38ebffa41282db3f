from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Column, DateTime, ForeignKey, Identity, Index, String
from sqlmodel import Field, SQLModel

from app.db.base import utcnow, uuid7


class RefreshToken(SQLModel, table=True):
    """Rotating refresh tokens. Each use spends the token and issues the next one of
    its family; presenting a spent token again revokes the whole family."""

    __tablename__ = "refresh_tokens"

    tenant_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    )
    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    user_id: uuid.UUID
    family_id: uuid.UUID
    secret_hash: str = Field(max_length=128)
    issued_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    spent_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))

    __table_args__ = (Index("ix_refresh_tokens_tenant_id_family_id", "tenant_id", "family_id"),)


class EmailVerification(SQLModel, table=True):
    __tablename__ = "email_verifications"

    tenant_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    )
    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    user_id: uuid.UUID
    secret_hash: str = Field(max_length=128)
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    used_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class LoginFailure(SQLModel, table=True):
    """Platform table: failed logins by account and by client address, for throttling."""

    __tablename__ = "login_failures"

    id: int | None = Field(
        default=None, sa_column=Column(BigInteger, Identity(always=True), primary_key=True)
    )
    kind: str = Field(sa_column=Column(String(16), nullable=False))  # account | address
    key: str = Field(sa_column=Column(String(254), nullable=False))
    occurred_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )

    __table_args__ = (
        Index("ix_login_failures_kind_key_occurred_at", "kind", "key", "occurred_at"),
    )
