"""sso oidc: per-tenant OpenID Connect configuration and pending login states

Revision ID: b1c0551d0001
Revises: a535855066e1
Create Date: 2026-11-24 01:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

from app.db import rls

revision: str = "b1c0551d0001"
down_revision: str | None = "a535855066e1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sso_oidc_configs",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("issuer", sqlmodel.sql.sqltypes.AutoString(length=2048), nullable=False),
        sa.Column("client_id", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("client_secret_encrypted", sa.Text(), nullable=False),
        sa.Column("allowed_domains", sa.ARRAY(sa.String(length=253)), nullable=False),
        sa.Column("default_role", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_sso_oidc_configs_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_sso_oidc_configs")),
        sa.UniqueConstraint("tenant_id", name="uq_sso_oidc_configs_tenant_id"),
    )
    op.create_table(
        "sso_login_states",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("state_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column(
            "browser_binding_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False
        ),
        sa.Column("nonce", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("code_verifier", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("issuer", sqlmodel.sql.sqltypes.AutoString(length=2048), nullable=False),
        sa.Column("client_id", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("redirect_uri", sqlmodel.sql.sqltypes.AutoString(length=2048), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_sso_login_states_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_sso_login_states")),
    )
    op.create_index(
        "ix_sso_login_states_tenant_id_state_hash",
        "sso_login_states",
        ["tenant_id", "state_hash"],
        unique=True,
    )
    op.create_index(
        "ix_sso_login_states_tenant_id_expires_at",
        "sso_login_states",
        ["tenant_id", "expires_at"],
        unique=False,
    )

    # Row-level security and least-privilege grants (autogenerate does not see these).
    ddl: list[str] = []
    ddl += rls.tenant_table_ddl("sso_oidc_configs")
    # Login states are inserted and deleted, never updated.
    ddl += rls.tenant_table_ddl("sso_login_states", "SELECT, INSERT, DELETE")
    for stmt in ddl:
        op.execute(stmt)


def downgrade() -> None:
    # Dropping a table drops its policies and grants with it.
    op.drop_index("ix_sso_login_states_tenant_id_expires_at", table_name="sso_login_states")
    op.drop_index("ix_sso_login_states_tenant_id_state_hash", table_name="sso_login_states")
    op.drop_table("sso_login_states")
    op.drop_table("sso_oidc_configs")
