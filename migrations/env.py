"""Alembic environment: async engine; superusers migrate under SET ROLE <owner>."""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

import app.models  # noqa: F401 - registers every table on the metadata
from app.config import get_settings
from app.db.base import metadata
from app.db.engine import create_engine

config = context.config
target_metadata = metadata


def _url() -> str:
    url = config.attributes.get("admin_url") or get_settings().database_url
    if not url:
        raise RuntimeError("no database URL: set SWITCHBOARD_DATABASE_URL")
    return str(url)


def _include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """Autogenerate one domain at a time: SWITCHBOARD_AUTOGEN_TABLES=a,b (a dev aid)."""
    only = os.environ.get("SWITCHBOARD_AUTOGEN_TABLES")
    if not only or type_ != "table":
        return True
    return name in only.split(",") or reflected


def _run(connection: Connection) -> None:
    settings = get_settings()
    is_super = connection.execute(
        text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    ).scalar()
    if is_super:
        connection.execute(text(f'SET ROLE "{settings.owner_role}"'))
    # Serialise concurrent migrators (several replicas starting at once).
    connection.execute(text("SELECT pg_advisory_xact_lock(7427466391)"))
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_object=_include_object,
        compare_type=True,
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _main() -> None:
    engine = create_engine(_url(), pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_run)
            await conn.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported")
asyncio.run(_main())
