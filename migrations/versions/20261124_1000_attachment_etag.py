"""attachment etag: the stored object's ETag when a message took it, so a file replaced
afterwards (a presigned upload URL used again before it expires) is never served

Revision ID: c5a000000003
Revises: c5a000000002
Create Date: 2026-11-24 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "c5a000000003"
down_revision: str | None = "c5a000000002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, no default: adding it rewrites nothing and takes only a brief lock. Rows
    # from before (and files the server stored itself) have none and are served as is.
    op.add_column(
        "attachments",
        sa.Column("etag", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("attachments", "etag")
