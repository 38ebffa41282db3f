from __future__ import annotations

from tests.routing.conftest import go_available, staffed_tenant, wait_for


async def test_a_contact_is_offered_accepted_and_completed(client, router):
    t = await staffed_tenant(client, agents=1, queue={"wrap_up_seconds": 0})
    agent = t["agents"][0]
    await go_available(client, agent)
    r = await client.post(
        "/v1/contacts",
        json={"channel": "chat", "queue_id": t["queue"]["id"], "customer_ref": "c-1"},
        headers=t["headers"],
    )
    assert r.status_code == 201, r.text
    contact = r.json()

    async def offered():
        r = await client.get("/v1/agent/presence", headers=agent["headers"])
        res = [x for x in r.json()["reservations"] if x["state"] == "offered"]
        return res[0] if res else None

    offer = await wait_for(offered)
    assert offer["contact_id"] == contact["id"]
    r = await client.post(f"/v1/reservations/{offer['id']}/accept", headers=agent["headers"])
    assert r.status_code == 200, r.text
    r = await client.post(f"/v1/reservations/{offer['id']}/complete", headers=agent["headers"])
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "completed"
    r = await client.get(f"/v1/contacts/{contact['id']}", headers=t["headers"])
    assert r.json()["state"] == "completed"
    r = await client.get(f"/v1/contacts/{contact['id']}/routing", headers=t["headers"])
    kinds = [e["kind"] for e in r.json()["trail"]]
    assert kinds == ["enqueued", "offered", "accepted", "completed"], kinds
