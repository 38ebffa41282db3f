"""The flows migration matches the models (written by hand), and published versions
cannot be rewritten by the runtime role."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import app.models  # noqa: F401 - every table on the metadata
from app.db import bootstrap
from app.db.base import metadata
from app.db.engine import create_engine

TABLES = {"flows", "flow_versions"}


def _mentions_ours(diff: Any) -> bool:
    if isinstance(diff, list):
        return any(_mentions_ours(d) for d in diff)
    return any(
        getattr(part, "name", None) in TABLES
        or getattr(getattr(part, "table", None), "name", None) in TABLES
        or part in TABLES
        for part in diff
        if not isinstance(part, dict | list)
    )


async def test_the_migration_matches_the_models(db_urls: bootstrap.DatabaseUrls) -> None:
    engine = create_engine(db_urls.admin, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as c:
            diffs = await c.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
            )
    finally:
        await engine.dispose()
    assert [d for d in diffs if _mentions_ours(d)] == []


async def test_constraints_and_privileges(
    admin_conn: asyncpg.Connection, app_conn: asyncpg.Connection
) -> None:
    checks = await admin_conn.fetch(
        "SELECT conname FROM pg_constraint WHERE contype = 'c' "
        "AND conrelid IN ('flows'::regclass, 'flow_versions'::regclass)"
    )
    assert {r["conname"] for r in checks} == {
        "ck_flows_channel_valid",
        "ck_flows_published_version_positive",
        "ck_flow_versions_number_positive",
    }
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await app_conn.execute("UPDATE flow_versions SET graph = '{}'::jsonb")
