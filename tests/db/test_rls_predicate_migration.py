"""c4a000000002 rewrites every tenant policy so the tenant setting is read once per
statement (a scalar sub-select), and its downgrade restores the per-row form."""

from __future__ import annotations

import asyncpg

from tests.migration_check import check_migration


async def _once_per_statement(conn: asyncpg.Connection) -> None:
    quals = await conn.fetch(
        "SELECT tablename, qual, with_check FROM pg_policies WHERE policyname = 'tenant_isolation'"
    )
    assert len(quals) >= 20
    for q in quals:
        # PostgreSQL prints it back as ( SELECT (NULLIF(current_setting(...)))::uuid ...).
        assert "( SELECT (NULLIF(current_setting('app.tenant_id'" in q["qual"], q["tablename"]
        assert "( SELECT (NULLIF(current_setting('app.tenant_id'" in q["with_check"]
    shard_quals = await conn.fetch(
        "SELECT qual FROM pg_policies WHERE policyname = 'router_shards'"
    )
    assert shard_quals and all(
        "SELECT switchboard_router_shards()" in q["qual"] for q in shard_quals
    )


async def test_tenant_policies_read_the_setting_once_per_statement(server_url, settings):
    await check_migration(
        server_url,
        settings,
        revision="c4a000000002",
        parent="c4a000000001",
        tables=(),
        also=_once_per_statement,
    )
