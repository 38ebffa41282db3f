"""A routing worker whose database connections are cut reconnects and routes again
(its leases are still its own when it is back within the lease time)."""

from __future__ import annotations

from tests.routing.conftest import enqueue, go_available, staffed_tenant, wait_for, wait_offer


async def test_the_worker_reconnects_after_its_connections_are_cut(client, router, admin_conn):
    t = await staffed_tenant(client, agents=1)
    agent = t["agents"][0]
    await go_available(client, agent)
    first = await enqueue(client, t, t["queue"]["id"])
    await wait_offer(client, agent, first["id"])

    cut = await admin_conn.fetch(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE usename = 'switchboard_router' AND datname = current_database()"
    )
    assert len(cut) == 3  # listen, work and lease connections

    async def reconnected() -> bool:
        n = await admin_conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE usename = 'switchboard_router' AND datname = current_database()"
        )
        return n == 3

    await wait_for(reconnected, timeout=15)
    second = await enqueue(client, t, t["queue"]["id"])
    offer = await wait_offer(client, agent, second["id"], within=15)
    assert offer["contact_id"] == second["id"]
    assert len(router.shards) == 64
