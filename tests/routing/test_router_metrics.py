"""A routing worker's Prometheus metrics: offers by tenant, rounds, waits, shards."""

from __future__ import annotations

from app.routing.metrics import RouterMetrics
from tests.routing.conftest import go_available, staffed_tenant, wait_for


async def test_offers_are_counted_by_tenant(client, router):
    router.metrics = RouterMetrics()
    t = await staffed_tenant(client, agents=1)
    await go_available(client, t["agents"][0])
    r = await client.post(
        "/v1/contacts",
        json={"channel": "chat", "queue_id": t["queue"]["id"]},
        headers=t["headers"],
    )
    assert r.status_code == 201
    registry = router.metrics.registry
    labels = {"tenant_id": t["tenant"]["id"]}

    async def counted():
        return registry.get_sample_value("switchboard_routing_offers_total", labels) == 1.0

    await wait_for(counted)
    assert registry.get_sample_value("switchboard_routing_rounds_total") >= 1
    assert registry.get_sample_value("switchboard_routing_enqueue_to_offer_seconds_count") == 1
    assert registry.get_sample_value("switchboard_routing_shards_held") == 64
