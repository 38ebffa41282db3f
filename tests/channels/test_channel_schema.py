"""The channel tables match their models with row-level security forced, and the
OpenAPI document names every status each channel route answers, with examples."""

from __future__ import annotations

import os

import asyncpg
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import app.models  # noqa: F401 - every table on the metadata
from app.db import bootstrap
from app.db.base import metadata
from app.db.engine import create_engine

TABLES = ("channels", "channel_numbers", "channel_addresses")
REVISION, PARENT = "c3a000000008", "c3a000000007"


async def _rls(conn: asyncpg.Connection) -> dict[str, tuple[bool, bool]]:
    rows = await conn.fetch(
        "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class "
        "WHERE relname = ANY($1::text[]) AND relkind = 'r'",
        list(TABLES),
    )
    return {r["relname"]: (r["relrowsecurity"], r["relforcerowsecurity"]) for r in rows}


async def test_migration_matches_the_models_and_reverses(server_url, settings):
    name = f"sb_test_channels_migration_{os.getpid()}"
    await bootstrap.ensure_database(settings, server_url, name)
    urls = bootstrap.urls_for(settings, server_url, database=name)
    try:
        await _alembic("upgrade", urls.admin, REVISION)
        conn = await asyncpg.connect(**bootstrap._asyncpg_kwargs(urls.admin))
        try:
            expected = {
                "channels": (True, True),
                "channel_numbers": (True, True),
                # A platform table: ingress reads it before it knows the tenant.
                "channel_addresses": (False, False),
            }
            assert await _rls(conn) == expected
            engine = create_engine(urls.admin, pool_size=1, max_overflow=0)
            try:
                async with engine.connect() as c:
                    diffs = await c.run_sync(
                        lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
                    )
            finally:
                await engine.dispose()
            ours = [d for d in diffs if any(f"'{t}'" in repr(d) for t in TABLES)]
            assert ours == [], ours
            await _alembic("downgrade", urls.admin, PARENT)
            assert await _rls(conn) == {}
            await _alembic("upgrade", urls.admin, REVISION)
            assert await _rls(conn) == expected
        finally:
            await conn.close()
    finally:
        await bootstrap.drop_database(server_url, name)


async def _alembic(direction: str, url: str, revision: str) -> None:
    import asyncio

    from alembic import command

    fn = command.downgrade if direction == "downgrade" else command.upgrade
    await asyncio.to_thread(fn, bootstrap.alembic_config(url), revision)


EXPECTED = {
    ("/v1/channels", "post"): {"201", "401", "403", "409", "422"},
    ("/v1/channels", "get"): {"200", "401", "403", "422"},
    ("/v1/channels/{channel_id}", "get"): {"200", "401", "403", "404", "422"},
    ("/v1/channels/{channel_id}", "patch"): {"200", "401", "403", "404", "409", "412", "422"},
    ("/v1/channels/{channel_id}", "delete"): {"204", "401", "403", "404", "409", "412", "422"},
    ("/v1/channels/{channel_id}/rotate-widget-key", "post"): {"200", "404", "409", "412"},
    ("/v1/channels/{channel_id}/rotate-webhook-secret", "post"): {"200", "404", "409", "412"},
}


def test_openapi_documents_every_status_with_examples():
    from app.config import Settings
    from app.main import create_app

    doc = create_app(Settings(environment="test"), app_database_url="postgresql://x/y").openapi()
    for (path, method), statuses in EXPECTED.items():
        op = doc["paths"][path][method]
        assert statuses <= set(op["responses"]), (path, method, set(op["responses"]))
        for status in statuses & {"404", "409", "412"}:
            content = op["responses"][status]["content"]["application/problem+json"]
            assert content["examples"], (path, method, status)
    create = doc["paths"]["/v1/channels"]["post"]
    body = create["requestBody"]["content"]["application/json"]
    assert set(body["examples"]) == {
        "voice",
        "webchat",
        "email",
        "sms",
        "whatsapp",
        "wechat",
        "messenger",
    }
    assert body["schema"]["discriminator"]["propertyName"] == "type"
    # Credentials are write-only in the schema, and no read model has a secret.
    schemas = doc["components"]["schemas"]
    creds = schemas["SmsChannelCreate"]["properties"]["credentials"]
    assert "writeOnly" in str(creds)
    for name, schema in schemas.items():
        if name.endswith("ChannelRead"):
            assert "webhook_secret" not in schema["properties"], name
            assert "credentials" not in schema["properties"], name
    assert "webhook_secret" in schemas["SmsChannelCreated"]["properties"]
