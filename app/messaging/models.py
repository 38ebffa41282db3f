"""Webhook receipts: what each channel's ingress has already taken (provider message
ids, delivery receipts, WeChat nonces), so a replayed request changes nothing."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, Index
from sqlmodel import Field, SQLModel

from app.db.base import utcnow


class WebhookReceipt(SQLModel, table=True):
    __tablename__ = "webhook_receipts"

    tenant_id: uuid.UUID = Field(primary_key=True)
    channel_id: uuid.UUID = Field(primary_key=True)
    key: str = Field(primary_key=True, max_length=200)
    received_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]

    # Purging a channel's expired receipts (app.messaging.ingest) reads this.
    __table_args__ = (
        Index(
            "ix_webhook_receipts_tenant_id_channel_id_received_at",
            "tenant_id",
            "channel_id",
            "received_at",
        ),
    )
