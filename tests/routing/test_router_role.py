"""The routing workers' role sees the routing rows of the shards it names for the
transaction, and nothing else: no shard named, no rows; another shard's tenant, no rows;
no access to users, credentials or anything outside routing."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from app.db import bootstrap
from app.routing.shards import SHARD_COUNT, shard_of
from tests.routing.conftest import go_available, staffed_tenant


async def _router_conn(db_urls: bootstrap.DatabaseUrls) -> asyncpg.Connection:
    return await asyncpg.connect(**bootstrap.asyncpg_kwargs(db_urls.router))


def test_the_shard_of_a_tenant_is_the_same_in_python_and_sql():
    # Checked against SQL in the test below; here the spread over shards.
    ids = [uuid.uuid4() for _ in range(6400)]
    counts = [0] * SHARD_COUNT
    for i in ids:
        counts[shard_of(i)] += 1
    assert min(counts) > 50 and max(counts) < 160


async def test_the_router_role_sees_only_the_shards_it_names(client, db_urls, admin_conn):
    t = await staffed_tenant(client, agents=1)
    await go_available(client, t["agents"][0])
    r = await client.post(
        "/v1/contacts",
        json={"channel": "chat", "queue_id": t["queue"]["id"]},
        headers=t["headers"],
    )
    assert r.status_code == 201
    tenant_id = uuid.UUID(t["tenant"]["id"])
    shard = shard_of(tenant_id)
    assert await admin_conn.fetchval("SELECT switchboard_shard_of($1)", tenant_id) == shard
    other = (shard + 1) % SHARD_COUNT

    conn = await _router_conn(db_urls)
    try:

        async def visible(shards: str) -> dict[str, int]:
            async with conn.transaction():
                await conn.execute("SELECT set_config('app.router_shards', $1, true)", shards)
                return {
                    table: await conn.fetchval(f"SELECT count(*) FROM {table}")
                    for table in ("contacts", "agent_presence", "queues", "agents", "skills")
                }

        assert set((await visible("")).values()) == {0}
        assert set((await visible(str(other))).values()) == {0}
        mine = await visible(f"{other},{shard}")
        assert mine["contacts"] == 1 and mine["agent_presence"] == 1 and mine["queues"] == 1
        # Nothing outside routing: no users, no credentials, no audit.
        for table in ("users", "api_keys", "refresh_tokens", "audit_events", "tenants"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                async with conn.transaction():
                    await conn.fetchval(f"SELECT count(*) FROM {table}")
        # Read-only on configuration, and no writes into a shard it did not name.
        async with conn.transaction():
            await conn.execute("SELECT set_config('app.router_shards', $1, true)", str(shard))
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute("UPDATE queues SET name = 'x'")
        async with conn.transaction():
            await conn.execute("SELECT set_config('app.router_shards', $1, true)", str(other))
            assert await conn.execute("UPDATE contacts SET priority = 1") == "UPDATE 0"
    finally:
        await conn.close()
