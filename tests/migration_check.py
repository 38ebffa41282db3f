"""What a migration test checks: the migration's tables match the models (the migrations
are written by hand), row-level security is as it should be, and the migration goes
down and up again. Each check runs on a scratch database of its own, migrated only up
to the revision under test: later migrations are not its subject."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Collection
from typing import Any, Literal

import asyncpg
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import app.models  # noqa: F401 - every table on the metadata
from app.config import Settings
from app.db import bootstrap
from app.db.base import metadata
from app.db.engine import create_engine

# (row security enabled, forced) per table.
RowSecurity = dict[str, tuple[bool, bool]]


async def alembic(direction: Literal["upgrade", "downgrade"], url: str, revision: str) -> None:
    fn = command.downgrade if direction == "downgrade" else command.upgrade
    await asyncio.to_thread(fn, bootstrap.alembic_config(url), revision)


def table_of(diff: Any) -> str | None:
    """The table a compare_metadata difference is about."""
    if isinstance(diff, list):  # column modifications come grouped
        return table_of(diff[0])
    kind, obj = diff[0], diff[1]
    if kind.startswith("modify_") or kind in ("add_column", "remove_column"):
        return str(diff[2])
    if isinstance(obj, sa.Table):
        return str(obj.name)
    if kind in ("add_fk", "remove_fk"):
        return str(obj.parent.name)
    table = getattr(obj, "table", None)
    return str(table.name) if table is not None else None


async def model_drift(url: str, tables: Collection[str]) -> list[Any]:
    """How the database's ``tables`` differ from the models (empty when they match)."""
    engine = create_engine(url, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as c:
            diffs = await c.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
            )
    finally:
        await engine.dispose()
    return [d for d in diffs if table_of(d) in tables]


async def row_security(conn: asyncpg.Connection, tables: Collection[str]) -> RowSecurity:
    """Row-level security of those of ``tables`` that exist."""
    rows = await conn.fetch(
        "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class "
        "WHERE relname = ANY($1::text[]) AND relkind = 'r'",
        list(tables),
    )
    return {r["relname"]: (r["relrowsecurity"], r["relforcerowsecurity"]) for r in rows}


def later(diff: Any, added_later: Collection[tuple[str, str]]) -> bool:
    """A difference that a later migration makes: a column or an index it adds."""
    if isinstance(diff, tuple) and diff[0] == "add_column":
        return (diff[2], diff[3].name) in added_later
    if isinstance(diff, tuple) and diff[0] == "add_index":
        return (diff[1].table.name, diff[1].name) in added_later
    return False


async def check_migration(
    server_url: str,
    settings: Settings,
    *,
    revision: str,
    parent: str,
    tables: Collection[str],
    expected_security: RowSecurity | None = None,
    also: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
    added_later: Collection[tuple[str, str]] = (),
) -> None:
    """Upgrade a scratch database to ``revision``: ``tables`` match the models and have
    ``expected_security`` (by default enabled and forced on each), and ``also`` runs its
    own checks there (``added_later``: (table, column or index) pairs a later migration
    adds, which the model has and this revision does not). Downgrading to ``parent``
    removes the tables; upgrading again brings them back as they were."""
    expected = expected_security or {t: (True, True) for t in tables}
    name = f"sb_test_migration_{revision}_{os.getpid()}"
    await bootstrap.ensure_database(settings, server_url, name)
    urls = bootstrap.urls_for(settings, server_url, database=name)
    try:
        await alembic("upgrade", urls.admin, revision)
        conn = await asyncpg.connect(**bootstrap.asyncpg_kwargs(urls.admin))
        try:
            security = await row_security(conn, tables)
            assert security == expected, security
            if also is not None:
                await also(conn)
            drift = (
                [d for d in await model_drift(urls.admin, tables) if not later(d, added_later)]
                if added_later
                else await model_drift(urls.admin, tables)
            )
            assert drift == [], drift

            await alembic("downgrade", urls.admin, parent)
            security = await row_security(conn, tables)
            assert security == {}, f"left after downgrading: {security}"
            await alembic("upgrade", urls.admin, revision)
            security = await row_security(conn, tables)
            assert security == expected, security
        finally:
            await conn.close()
    finally:
        await bootstrap.drop_database(server_url, name)
