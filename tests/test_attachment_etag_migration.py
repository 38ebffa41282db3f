"""c5a000000003 adds the nullable ``attachments.etag`` column (the sealed object's ETag):
the table then matches the model, and the migration goes down (dropping only the
column, keeping the attachments) and up again (old rows without a seal)."""

from __future__ import annotations

import os
import uuid

import asyncpg

from app.db import bootstrap
from tests.migration_check import alembic, model_drift

REVISION, PARENT = "c5a000000003", "c5a000000002"


async def _etag_column(conn: asyncpg.Connection) -> tuple[str, str, int] | None:
    row = await conn.fetchrow(
        "SELECT data_type, is_nullable, character_maximum_length FROM information_schema.columns "
        "WHERE table_name = 'attachments' AND column_name = 'etag'"
    )
    return None if row is None else (row[0], row[1], row[2])


async def test_the_etag_column_comes_and_goes_keeping_the_attachments(server_url, settings):
    name = f"sb_test_migration_{REVISION}_{os.getpid()}"
    await bootstrap.ensure_database(settings, server_url, name)
    urls = bootstrap.urls_for(settings, server_url, database=name)
    try:
        await alembic("upgrade", urls.admin, REVISION)
        conn = await asyncpg.connect(**bootstrap.asyncpg_kwargs(urls.admin))
        try:
            assert await _etag_column(conn) == ("character varying", "YES", 200)
            assert await model_drift(urls.admin, ("attachments",)) == []
            await conn.execute("SET session_replication_role = replica")  # skip the FKs
            await conn.execute(
                "INSERT INTO attachments (tenant_id, id, conversation_id, object_key, filename, "
                "content_type, max_bytes, status, uploaded_by, created_at, etag) VALUES ($1, $2, "
                "$3, 'k', 'a.png', 'image/png', 10, 'stored', 'customer', now(), 'abc')",
                uuid.uuid4(),
                uuid.uuid4(),
                uuid.uuid4(),
            )
            await conn.execute("SET session_replication_role = DEFAULT")

            await alembic("downgrade", urls.admin, PARENT)
            assert await _etag_column(conn) is None
            assert await conn.fetchval("SELECT count(*) FROM attachments") == 1

            await alembic("upgrade", urls.admin, REVISION)
            assert await _etag_column(conn) == ("character varying", "YES", 200)
            assert await conn.fetchval("SELECT etag FROM attachments") is None
        finally:
            await conn.close()
    finally:
        await bootstrap.drop_database(server_url, name)
