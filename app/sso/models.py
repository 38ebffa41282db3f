from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ARRAY, Column, DateTime, ForeignKey, Index, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from app.db.base import utcnow, uuid7


class SsoOidcConfig(SQLModel, table=True):
    """A tenant's OpenID Connect provider (at most one per tenant). The client secret
    is stored only encrypted (app.core.crypto) and is never returned."""

    __tablename__ = "sso_oidc_configs"

    tenant_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    )
    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    issuer: str = Field(max_length=2048)
    client_id: str = Field(max_length=255)
    client_secret_encrypted: str = Field(sa_column=Column(Text, nullable=False))
    allowed_domains: list[str] = Field(sa_column=Column(ARRAY(String(253)), nullable=False))
    default_role: str = Field(max_length=16)
    enabled: bool = True
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    updated_by: uuid.UUID | None = None

    __table_args__ = (UniqueConstraint("tenant_id", name="uq_sso_oidc_configs_tenant_id"),)


class SsoLoginState(SQLModel, table=True):
    """One pending OIDC login: what the callback needs to finish it. Found by the hash
    of ``state``; deleted when used (one-time); useless after ``expires_at``."""

    __tablename__ = "sso_login_states"

    tenant_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    )
    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    state_hash: str = Field(max_length=64)
    # Hash of the secret in the browser cookie set by /login: binds the state to the
    # browser that started the login (login CSRF).
    browser_binding_hash: str = Field(max_length=64)
    nonce: str = Field(max_length=128)
    code_verifier: str = Field(max_length=128)
    # The provider the login was started against; a config change voids pending logins.
    issuer: str = Field(max_length=2048)
    client_id: str = Field(max_length=255)
    redirect_uri: str = Field(max_length=2048)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))

    __table_args__ = (
        Index("ix_sso_login_states_tenant_id_state_hash", "tenant_id", "state_hash", unique=True),
        Index("ix_sso_login_states_tenant_id_expires_at", "tenant_id", "expires_at"),
    )
