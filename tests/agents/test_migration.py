"""The routing-profile and agent migrations: they match the models (written by hand),
force row-level security, and go down and up again."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import asyncpg
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import app.models  # noqa: F401 - every table on the metadata
from app.db import bootstrap
from app.db.base import metadata
from app.db.engine import create_engine

TABLES = (
    "routing_profiles",
    "routing_profile_queues",
    "agents",
    "agent_skills",
    "agent_invitations",
)
AGENTS, PROFILES, PARENT = "c3a000000005", "c3a000000004", "c3a000000003"


def _table_of(diff: Any) -> str | None:
    """The table a compare_metadata difference is about."""
    if isinstance(diff, list):  # column modifications come grouped
        return _table_of(diff[0])
    kind, obj = diff[0], diff[1]
    if kind.startswith("modify_"):
        return str(diff[2])
    if kind in ("add_table", "remove_table"):
        return str(obj.name)
    if kind in ("add_column", "remove_column"):
        return str(diff[2])
    if kind in ("add_fk", "remove_fk"):
        return str(obj.parent.name)
    table = getattr(obj, "table", None)
    return str(table.name) if table is not None else None


async def _rls(conn: asyncpg.Connection) -> dict[str, tuple[bool, bool]]:
    rows = await conn.fetch(
        "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class "
        "WHERE relname = ANY($1::text[]) AND relkind = 'r'",
        list(TABLES),
    )
    return {r["relname"]: (r["relrowsecurity"], r["relforcerowsecurity"]) for r in rows}


async def _alembic(direction: str, url: str, revision: str) -> None:
    fn = command.downgrade if direction == "downgrade" else command.upgrade
    await asyncio.to_thread(fn, bootstrap.alembic_config(url), revision)


async def test_migrations_match_the_models_and_reverse(server_url, settings):
    name = f"sb_test_agents_migration_{os.getpid()}"
    await bootstrap.ensure_database(settings, server_url, name)
    urls = bootstrap.urls_for(settings, server_url, database=name)
    try:
        await _alembic("upgrade", urls.admin, AGENTS)
        conn = await asyncpg.connect(**bootstrap._asyncpg_kwargs(urls.admin))
        try:
            assert await _rls(conn) == {t: (True, True) for t in TABLES}
            engine = create_engine(urls.admin, pool_size=1, max_overflow=0)
            try:
                async with engine.connect() as c:
                    diffs = await c.run_sync(
                        lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
                    )
            finally:
                await engine.dispose()
            ours = [d for d in diffs if _table_of(d) in TABLES]
            assert ours == [], ours

            await _alembic("downgrade", urls.admin, PARENT)
            assert await _rls(conn) == {}
            await _alembic("upgrade", urls.admin, AGENTS)
            assert await _rls(conn) == {t: (True, True) for t in TABLES}
        finally:
            await conn.close()
    finally:
        await bootstrap.drop_database(server_url, name)
