"""Races between an agent's answer and the routing worker's timers: whichever commits
first wins; the other finds nothing to do (no double release of points, no false miss)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from app.db import bootstrap
from app.routing import transitions
from app.routing.shards import shard_of
from tests.routing.conftest import enqueue, go_available, running_router, staffed_tenant, wait_offer


async def test_a_reject_and_a_time_out_of_the_same_offer_release_it_once(
    client, db_urls, admin_conn
):
    t = await staffed_tenant(client, agents=1)
    agent = t["agents"][0]
    await go_available(client, agent)
    async with running_router(db_urls, offer_timeout_seconds=600):
        c = await enqueue(client, t, t["queue"]["id"])
        offer = await wait_offer(client, agent, c["id"])
    tenant_id = uuid.UUID(t["tenant"]["id"])
    shard = shard_of(tenant_id)
    # The offer is past its time, as the worker will see it.
    await admin_conn.execute(
        "UPDATE reservations SET offer_expires_at = now() - interval '1 second' WHERE id = $1",
        uuid.UUID(offer["id"]),
    )
    agent_conn = await asyncpg.connect(**bootstrap.asyncpg_kwargs(db_urls.app))
    router_conn = await asyncpg.connect(**bootstrap.asyncpg_kwargs(db_urls.router))
    try:
        # The agent's reject is in flight (its transaction holds the presence row)...
        reject = agent_conn.transaction()
        await reject.start()
        await agent_conn.execute("SELECT set_config('app.tenant_id', $1, true)", str(tenant_id))
        released = await transitions.release_offers(
            agent_conn,
            now=datetime.now(UTC),
            outcome="rejected",
            reason="agent-rejected",
            reservation_ids=[uuid.UUID(offer["id"])],
        )
        assert len(released) == 1

        # ...when the worker's time-out sweep runs: it waits for the presence row.
        async def sweep() -> list[asyncpg.Record]:
            async with router_conn.transaction():
                await router_conn.execute(
                    "SELECT set_config('app.router_shards', $1, true)", str(shard)
                )
                return await transitions.release_offers(
                    router_conn,
                    now=datetime.now(UTC) + timedelta(seconds=1),
                    outcome="timed_out",
                    reason="ring-no-answer",
                    expired_in_shards=[shard],
                    tenant_ids=[tenant_id],
                )

        task = asyncio.create_task(sweep())
        await asyncio.sleep(0.3)
        assert not task.done()  # blocked behind the agent's transaction
        await reject.commit()
        assert await asyncio.wait_for(task, 10) == []  # nothing left to time out
    finally:
        await agent_conn.close()
        await router_conn.close()

    row = await admin_conn.fetchrow(
        "SELECT used_points, missed_offers FROM agent_presence WHERE agent_id = $1",
        uuid.UUID(agent["id"]),
    )
    assert (row["used_points"], row["missed_offers"]) == (0, 0)
    states = await admin_conn.fetch(
        "SELECT state FROM reservations WHERE contact_id = $1", uuid.UUID(c["id"])
    )
    assert [s["state"] for s in states] == ["rejected"]
    kinds = await admin_conn.fetch(
        "SELECT kind FROM routing_events WHERE contact_id = $1 ORDER BY at", uuid.UUID(c["id"])
    )
    assert [k["kind"] for k in kinds] == ["enqueued", "offered", "rejected"]
