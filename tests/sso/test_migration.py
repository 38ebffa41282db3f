"""The SSO migration: matches the models, row-level security forced, and reversible."""

from __future__ import annotations

import os

import asyncpg
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import app.models  # noqa: F401 - every table on the metadata
from app.db import bootstrap
from app.db.base import metadata
from app.db.engine import create_engine

TABLES = ("sso_oidc_configs", "sso_login_states")
REVISION, PARENT = "b1c0551d0001", "a535855066e1"


async def _tables(conn: asyncpg.Connection) -> dict[str, tuple[bool, bool]]:
    rows = await conn.fetch(
        "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class "
        "WHERE relname = ANY($1::text[]) AND relkind = 'r'",
        list(TABLES),
    )
    return {r["relname"]: (r["relrowsecurity"], r["relforcerowsecurity"]) for r in rows}


async def test_upgrade_matches_models_and_downgrade_reverses(server_url, settings):
    name = f"sb_test_sso_migration_{os.getpid()}"
    await bootstrap.ensure_database(settings, server_url, name)
    urls = bootstrap.urls_for(settings, server_url, database=name)
    try:
        # Up to this revision only: later migrations are not this test's subject.
        await _alembic("upgrade", urls.admin, REVISION)
        conn = await asyncpg.connect(**bootstrap._asyncpg_kwargs(urls.admin))
        try:
            assert await _tables(conn) == {t: (True, True) for t in TABLES}
            policies = await conn.fetchval(
                "SELECT count(*) FROM pg_policies WHERE tablename = ANY($1::text[])", list(TABLES)
            )
            assert policies == len(TABLES)
            owner = await conn.fetchval(
                "SELECT tableowner FROM pg_tables WHERE tablename = 'sso_oidc_configs'"
            )
            assert owner == settings.owner_role

            engine = create_engine(urls.admin, pool_size=1, max_overflow=0)
            try:
                async with engine.connect() as c:
                    diffs = await c.run_sync(
                        lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
                    )
            finally:
                await engine.dispose()
            ours = [d for d in diffs if any(t in repr(d) for t in TABLES)]
            assert ours == [], ours

            await _alembic("downgrade", urls.admin, PARENT)
            assert await _tables(conn) == {}
            await _alembic("upgrade", urls.admin, REVISION)
            assert await _tables(conn) == {t: (True, True) for t in TABLES}
        finally:
            await conn.close()
    finally:
        await bootstrap.drop_database(server_url, name)


async def _alembic(direction: str, url: str, revision: str) -> None:
    import asyncio

    from alembic import command

    fn = command.downgrade if direction == "downgrade" else command.upgrade
    await asyncio.to_thread(fn, bootstrap.alembic_config(url), revision)
