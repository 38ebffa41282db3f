from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, Column, DateTime, ForeignKeyConstraint, Index, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from app.db.base import utcnow
from app.db.mixins import TenantOwned, Versioned


class Flow(TenantOwned, Versioned, table=True):
    """A contact flow: an editable draft and immutable published versions."""

    __tablename__ = "flows"

    name: str = Field(max_length=100)
    description: str | None = Field(default=None, max_length=500)
    channel: str = Field(default="voice", max_length=16)
    draft: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    published_version: int | None = None

    __table_args__ = (
        Index("ix_flows_tenant_id_name", "tenant_id", text("lower(name)"), unique=True),
        CheckConstraint("channel IN ('voice', 'chat', 'any')", name="channel_valid"),
        CheckConstraint(
            "published_version IS NULL OR published_version >= 1",
            name="published_version_positive",
        ),
    )


class FlowVersion(SQLModel, table=True):
    """A published graph, numbered 1, 2, ... per flow. Immutable: contacts that started
    on it keep running it, so the runtime role may insert and delete but never update."""

    __tablename__ = "flow_versions"

    tenant_id: uuid.UUID = Field(primary_key=True)
    flow_id: uuid.UUID = Field(primary_key=True)
    number: int = Field(primary_key=True)
    graph: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    published_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    published_by: uuid.UUID | None = None

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "flow_id"],
            ["flows.tenant_id", "flows.id"],
            name="fk_flow_versions_flow",
            ondelete="CASCADE",
        ),
        CheckConstraint("number >= 1", name="number_positive"),
    )
