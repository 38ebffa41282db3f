"""message templates: an outbound WhatsApp message may be an approved template

Revision ID: c5a000000002
Revises: c5a000000001
Create Date: 2026-11-24 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "c5a000000002"
down_revision: str | None = "c5a000000001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, no default: adding it rewrites nothing and takes only a brief lock.
    op.add_column(
        "messages",
        sa.Column("template", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("messages", "template")
