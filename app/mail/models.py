from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Column, DateTime, ForeignKey, Index, Text
from sqlmodel import Field, SQLModel

from app.db.base import utcnow, uuid7


class OutboundMail(SQLModel, table=True):
    """Outbound mail, written in the business transaction and delivered after commit.
    With the dev backend it stays here: the tenant owner's dev outbox."""

    __tablename__ = "outbound_mail"

    tenant_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    )
    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    kind: str = Field(max_length=50)  # email-verification, invitation, ...
    to_address: str = Field(max_length=254)
    subject: str = Field(max_length=300)
    body_text: str = Field(sa_column=Column(Text, nullable=False))
    backend: str = Field(max_length=16)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    sent_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    attempts: int = 0
    last_error: str | None = Field(default=None, max_length=500)

    __table_args__ = (Index("ix_outbound_mail_tenant_id_created_at", "tenant_id", "created_at"),)
