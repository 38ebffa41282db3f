"""One tenant's flood does not hold up another tenant's routing."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime

import asyncpg
import httpx

from app.routing.shards import shard_of
from app.routing.worker import Router
from tests.routing.conftest import (
    enqueue,
    get_contact,
    go_available,
    staffed_tenant,
    wait_for,
    wait_offer,
)

FLOOD = 300
THROUGH_THE_API = 30


async def already_waiting(
    admin_conn: asyncpg.Connection, tenant_id: uuid.UUID, queue_id: uuid.UUID, n: int
) -> None:
    """``n`` chats waiting in the queue, as POST /v1/contacts leaves them (in one
    statement: a few hundred requests take longer than this whole test should)."""
    await admin_conn.execute(
        """
        INSERT INTO contacts (tenant_id, id, shard, channel, queue_id, original_queue_id,
            priority, state, mode, extra_skills, attributes, preferred_agent_ids,
            enqueued_at, queue_entered_at, missed_offers, version, created_at, updated_at)
        SELECT $1, gen_random_uuid(), $2, 'chat', $3, $3, 5, 'queued', 'live', '[]', '{}',
               '{}', t, t, 0, 1, t, t
          FROM generate_series(1, $4) AS i,
               LATERAL (SELECT now() - make_interval(secs => 60 - i * 0.01)) AS x(t)
        """,
        tenant_id,
        shard_of(tenant_id),
        queue_id,
        n,
    )


async def test_a_flooding_tenant_does_not_delay_another_tenants_offers(
    client: httpx.AsyncClient, router: Router, admin_conn: asyncpg.Connection
) -> None:
    busy = await staffed_tenant(client, agents=1)
    calm = await staffed_tenant(client, agents=1)
    busy_id = uuid.UUID(busy["tenant"]["id"])
    await admin_conn.execute("UPDATE tenants SET plan = 'enterprise' WHERE id = $1", busy_id)
    await already_waiting(
        admin_conn, busy_id, uuid.UUID(busy["queue"]["id"]), FLOOD - THROUGH_THE_API
    )
    await go_available(client, busy["agents"][0])
    await go_available(client, calm["agents"][0])
    await wait_offer(client, busy["agents"][0])

    async def waiting() -> int:
        n = await admin_conn.fetchval(
            "SELECT count(*) FROM contacts WHERE tenant_id = $1 AND state = 'queued'", busy_id
        )
        return int(n)

    async def flood(n: int) -> None:
        for _ in range(n):
            await enqueue(client, busy, busy["queue"]["id"])

    async def under_way() -> bool:
        return await waiting() >= FLOOD - THROUGH_THE_API + 5

    # The busy tenant keeps enqueueing from five clients at once; the calm tenant's
    # contact arrives in the middle of it.
    flooding = [asyncio.create_task(flood(THROUGH_THE_API // 5)) for _ in range(5)]
    await wait_for(under_way, timeout=30)
    c = await enqueue(client, calm, calm["queue"]["id"])
    await wait_offer(client, calm["agents"][0], c["id"])
    await asyncio.gather(*flooding)

    offered = await get_contact(client, calm, c["id"])
    latency = datetime.fromisoformat(offered["offered_at"]) - datetime.fromisoformat(
        offered["enqueued_at"]
    )
    assert latency.total_seconds() < 2.0, latency
    # The busy tenant's single agent holds two chats; the rest of its line waits.
    assert await waiting() == FLOOD - 2
    r = await client.get("/v1/contacts", params={"state": "offered"}, headers=busy["headers"])
    assert len(r.json()) == 2
