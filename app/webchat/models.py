"""Web chat: the visitor's page trail, and the abuse counters of the public widget API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Column, DateTime, ForeignKeyConstraint, Index
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from app.db.mixins import TenantOwned


class PageView(TenantOwned, table=True):
    """A page the visitor saw, reported by the widget (context for agents, input for
    proactive rules). ``dwell_seconds`` is filled by the next view or a leave beacon."""

    __tablename__ = "page_views"

    customer_id: uuid.UUID
    identity_id: uuid.UUID
    channel_id: uuid.UUID
    url: str = Field(max_length=2000)
    title: str | None = Field(default=None, max_length=300)
    referrer: str | None = Field(default=None, max_length=2000)
    at: datetime = Field(sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    dwell_seconds: float | None = None
    attributes: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSONB, nullable=False)
    )

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "customer_id"],
            ["customers.tenant_id", "customers.id"],
            name="fk_page_views_customer",
        ),
        Index("ix_page_views_tenant_id_customer_id_at", "tenant_id", "customer_id", "at"),
    )


class AbuseCounter(SQLModel, table=True):
    """Platform table: requests per bucket (``visitor:<tenant>:<id>:<action>``,
    ``address:<ip>:<action>``) per fixed window, shared by every API replica."""

    __tablename__ = "abuse_counters"

    bucket: str = Field(primary_key=True, max_length=200)
    window_start: datetime = Field(primary_key=True, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    count: int = 0

    __table_args__ = (Index("ix_abuse_counters_window_start", "window_start"),)
