from __future__ import annotations

from typing import Any

from sqlalchemy import Column, Index, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field

from app.db.mixins import TenantOwned, Versioned


class BusinessHours(TenantOwned, Versioned, table=True):
    """Opening hours in an IANA time zone: a weekly schedule plus dated exceptions.

    weekly: {"mon": [["09:00", "17:00"]], ...}; exceptions: [{"date": "2026-12-25",
    "name": "Christmas", "closed": true} | {"date": ..., "open": [["10:00", "14:00"]]}].
    """

    __tablename__ = "business_hours"

    name: str = Field(max_length=100)
    timezone: str = Field(max_length=64)
    weekly: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    exceptions: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSONB, nullable=False)
    )

    __table_args__ = (
        Index("ix_business_hours_tenant_id_name", "tenant_id", text("lower(name)"), unique=True),
    )
