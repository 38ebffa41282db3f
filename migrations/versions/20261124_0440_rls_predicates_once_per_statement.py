"""rls predicates evaluated once per statement

The tenant policies compared ``tenant_id`` with ``NULLIF(current_setting(...))``, which
PostgreSQL evaluates for every row a sequential or bitmap scan visits. In a scalar
sub-select it is an InitPlan: computed once per statement, still usable as an index
condition. Same isolation, less work on every query of the API.

Revision ID: c4a000000002
Revises: c4a000000001
Create Date: 2026-11-24 04:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.db import rls

revision: str = "c4a000000002"
down_revision: str | None = "c4a000000001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _rewrite(predicate: str) -> None:
    tables = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT c.relname FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid "
                "WHERE p.polname = 'tenant_isolation' ORDER BY c.relname"
            )
        )
        .scalars()
        .all()
    )
    for table in tables:
        op.execute(
            f"ALTER POLICY tenant_isolation ON {table} USING ({predicate}) WITH CHECK ({predicate})"
        )


def upgrade() -> None:
    _rewrite(rls.TENANT_PREDICATE)


def downgrade() -> None:
    _rewrite(rls.TENANT_PREDICATE_V1)
