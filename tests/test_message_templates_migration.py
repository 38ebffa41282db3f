"""c5a000000002 adds the nullable ``messages.template`` column (an outbound WhatsApp
template): the messages table then matches the model, and the migration goes down
(dropping only the column, keeping the messages) and up again."""

from __future__ import annotations

import os
import uuid

import asyncpg

from app.db import bootstrap
from tests.migration_check import alembic, model_drift

REVISION, PARENT = "c5a000000002", "c5a000000001"


async def _template_column(conn: asyncpg.Connection) -> tuple[str, str] | None:
    row = await conn.fetchrow(
        "SELECT data_type, is_nullable FROM information_schema.columns "
        "WHERE table_name = 'messages' AND column_name = 'template'"
    )
    return None if row is None else (row["data_type"], row["is_nullable"])


async def test_the_template_column_comes_and_goes_keeping_the_messages(server_url, settings):
    name = f"sb_test_migration_{REVISION}_{os.getpid()}"
    await bootstrap.ensure_database(settings, server_url, name)
    urls = bootstrap.urls_for(settings, server_url, database=name)
    try:
        await alembic("upgrade", urls.admin, REVISION)
        conn = await asyncpg.connect(**bootstrap.asyncpg_kwargs(urls.admin))
        try:
            assert await _template_column(conn) == ("jsonb", "YES")
            assert await model_drift(urls.admin, ("messages",)) == []
            # A message written before the downgrade is still there after it.
            tenant, conversation = uuid.uuid4(), uuid.uuid4()
            await conn.execute("SET session_replication_role = replica")  # skip the FKs
            await conn.execute(
                "INSERT INTO messages (tenant_id, id, conversation_id, customer_id, direction, "
                "sender_kind, channel, body, attachments, status, email_references, attempts, "
                "created_at, template) VALUES ($1, $2, $3, $4, 'outbound', 'agent', "
                "'whatsapp', '[template hello_world (en)]', '[]', 'queued', '[]', 0, now(), "
                """'{"name": "hello_world", "language": "en", "parameters": []}')""",
                tenant,
                uuid.uuid4(),
                conversation,
                uuid.uuid4(),
            )
            await conn.execute("SET session_replication_role = DEFAULT")

            await alembic("downgrade", urls.admin, PARENT)
            assert await _template_column(conn) is None
            assert await conn.fetchval("SELECT count(*) FROM messages") == 1

            await alembic("upgrade", urls.admin, REVISION)
            assert await _template_column(conn) == ("jsonb", "YES")
            assert await conn.fetchval("SELECT template FROM messages") is None
        finally:
            await conn.close()
    finally:
        await bootstrap.drop_database(server_url, name)
