"""The flows migration matches the models (written by hand), and published versions
cannot be rewritten by the runtime role."""

from __future__ import annotations

import asyncpg
import pytest

from app.db import bootstrap
from tests.migration_check import model_drift

TABLES = {"flows", "flow_versions"}


async def test_the_migration_matches_the_models(db_urls: bootstrap.DatabaseUrls) -> None:
    assert await model_drift(db_urls.admin, TABLES) == []


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
