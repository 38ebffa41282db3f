from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Column, ForeignKeyConstraint, Index, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from app.db.mixins import TenantOwned, Versioned


class Channel(TenantOwned, Versioned, table=True):
    """A way customers reach the tenant. Credentials are encrypted and write-only."""

    __tablename__ = "channels"

    type: str = Field(max_length=16)  # voice webchat email sms whatsapp wechat messenger
    name: str = Field(max_length=100)
    enabled: bool = True
    # Per-type settings that may be shown (never a secret; see app/channels/schemas.py).
    config: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    # app.core.crypto ciphertexts, bound to tenant and channel (docs/decisions/0009).
    credentials_enc: str | None = Field(default=None, sa_column=Column(Text))
    webhook_secret_enc: str | None = Field(default=None, sa_column=Column(Text))

    __table_args__ = (
        Index("ix_channels_tenant_id_name", "tenant_id", text("lower(name)"), unique=True),
    )


class ChannelNumber(SQLModel, table=True):
    """The phone numbers a voice (or SMS) channel answers. A number serves at most one
    channel of each type (one voice channel, one SMS channel)."""

    __tablename__ = "channel_numbers"

    tenant_id: uuid.UUID = Field(primary_key=True)
    channel_id: uuid.UUID = Field(primary_key=True)
    phone_number_id: uuid.UUID = Field(primary_key=True)
    channel_type: str = Field(max_length=16)  # the channel's type: voice | sms

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "channel_id"],
            ["channels.tenant_id", "channels.id"],
            name="fk_channel_numbers_channel",
            ondelete="CASCADE",
        ),
        ForeignKeyConstraint(
            ["tenant_id", "phone_number_id"],
            ["phone_numbers.tenant_id", "phone_numbers.id"],
            name="fk_channel_numbers_number",
            ondelete="CASCADE",
        ),
        Index(
            "ix_channel_numbers_tenant_id_phone_number_id_channel_type",
            "tenant_id",
            "phone_number_id",
            "channel_type",
            unique=True,
        ),
    )


class ChannelAddress(SQLModel, table=True):
    """Platform table: inbound addresses (widget keys, email addresses, provider ids) to
    their tenant and channel, for ingress that must find the tenant before RLS."""

    __tablename__ = "channel_addresses"

    kind: str = Field(primary_key=True, max_length=16)  # widget_key | email | provider_id
    address: str = Field(primary_key=True, max_length=254)
    tenant_id: uuid.UUID = Field(foreign_key="tenants.id", ondelete="CASCADE")
    channel_id: uuid.UUID

    __table_args__ = (
        # An address never outlives its channel (referential checks bypass RLS).
        ForeignKeyConstraint(
            ["tenant_id", "channel_id"],
            ["channels.tenant_id", "channels.id"],
            name="fk_channel_addresses_channel",
            ondelete="CASCADE",
        ),
        Index("ix_channel_addresses_tenant_id_channel_id", "tenant_id", "channel_id"),
    )
