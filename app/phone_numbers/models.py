from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Column, DateTime, ForeignKeyConstraint, Index, text
from sqlmodel import Field, SQLModel

from app.db.mixins import TenantOwned, Versioned


class PhoneNumber(TenantOwned, Versioned, table=True):
    """A number a tenant holds (or held: released numbers stay for history)."""

    __tablename__ = "phone_numbers"

    e164: str = Field(max_length=16)
    country: str = Field(max_length=2)
    number_type: str = Field(max_length=16)  # local | toll_free | mobile
    carrier: str = Field(max_length=16)  # sandbox | twilio | aws
    carrier_ref: str | None = Field(default=None, max_length=200)
    flow_id: uuid.UUID | None = None
    status: str = Field(default="active", max_length=16)  # active | released
    claimed_at: datetime = Field(sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    released_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "flow_id"],
            ["flows.tenant_id", "flows.id"],
            name="fk_phone_numbers_flow",
            ondelete="RESTRICT",
        ),
        Index(
            "ix_phone_numbers_tenant_id_e164_active",
            "tenant_id",
            "e164",
            unique=True,
            postgresql_where=text("status = 'active'"),
        ),
    )


class NumberClaim(SQLModel, table=True):
    """Platform table: who holds each number now, and when a released one is free again.
    One row per number across all tenants, so two tenants can never hold the same one."""

    __tablename__ = "number_claims"

    e164: str = Field(primary_key=True, max_length=16)
    tenant_id: uuid.UUID | None = None  # None: not held
    phone_number_id: uuid.UUID | None = None
    claimed_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    available_after: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True))
    )
