"""One tenant whose data breaks its routing round does not stop the others: the worker
routes each due tenant alone, holds the failing one back, and goes on."""

from __future__ import annotations

import uuid

from tests.routing.conftest import enqueue, go_available, staffed_tenant, wait_offer


async def test_a_tenant_that_breaks_its_round_is_held_back_and_others_are_routed(
    client, router, admin_conn
):
    broken = await staffed_tenant(client, agents=1)
    healthy = await staffed_tenant(client, agents=1)
    await go_available(client, broken["agents"][0])
    bad = await enqueue(client, broken, broken["queue"]["id"])
    # Data no release of ours writes, as a bad migration or a manual fix might leave it.
    await admin_conn.execute(
        "UPDATE contacts SET state = 'queued', "
        """extra_skills = '[{"skill_id": "not-a-uuid", "min_proficiency": 1}]' """
        "WHERE id = $1",
        uuid.UUID(bad["id"]),
    )
    await admin_conn.execute(
        "UPDATE reservations SET state = 'rescinded' WHERE contact_id = $1",
        uuid.UUID(bad["id"]),
    )
    await admin_conn.execute(
        "UPDATE agent_presence SET used_points = 0 WHERE agent_id = $1",
        uuid.UUID(broken["agents"][0]["id"]),
    )
    await admin_conn.execute(
        "UPDATE routing_work SET due_at = now() WHERE tenant_id = $1",
        uuid.UUID(broken["tenant"]["id"]),
    )
    await go_available(client, healthy["agents"][0])
    good = await enqueue(client, healthy, healthy["queue"]["id"])
    offer = await wait_offer(client, healthy["agents"][0], good["id"], within=15)
    assert offer["contact_id"] == good["id"]
    held = await admin_conn.fetchval(
        "SELECT due_at > now() + interval '10 seconds' FROM routing_work WHERE tenant_id = $1",
        uuid.UUID(broken["tenant"]["id"]),
    )
    assert held
