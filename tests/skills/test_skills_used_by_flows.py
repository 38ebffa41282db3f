"""A skill that queues, agents or contact flows use cannot be deleted; the refusal says
which (flows name skills inside their graphs, without a foreign key)."""

from __future__ import annotations

from typing import Any

from tests.conftest import create_tenant

GOODBYE: dict[str, Any] = {"start": "bye", "nodes": {"bye": {"type": "end"}}}


def asks_for(queue_id: str, skill_id: str) -> dict[str, Any]:
    return {
        "start": "q",
        "nodes": {
            "q": {
                "type": "route_to_queue",
                "queue_id": queue_id,
                "extra_skills": [{"skill_id": skill_id, "min_proficiency": 4}],
            }
        },
    }


async def test_a_skill_a_flow_asks_for_cannot_be_deleted(client):
    t = await create_tenant(client)
    h = t["headers"]
    r = await client.post("/v1/skills", json={"name": "VIP"}, headers=h)
    skill = r.json()["id"]
    url = f"/v1/skills/{skill}"
    r = await client.post("/v1/queues", json={"name": "Sales", "channels": ["voice"]}, headers=h)
    queue = r.json()["id"]
    r = await client.post(
        "/v1/flows", json={"name": "Main line", "draft": asks_for(queue, skill)}, headers=h
    )
    flow = r.json()["id"]

    r = await client.delete(url, headers=h)
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "skill-in-use"
    assert r.json()["used_by"] == [{"type": "flow", "id": flow, "name": "Main line", "as": "draft"}]

    # The queue itself may go: the flow names the skill, not only the queue.
    assert (await client.post(f"/v1/flows/{flow}/publish", headers=h)).status_code == 201
    r = await client.patch(f"/v1/flows/{flow}", json={"draft": GOODBYE}, headers=h)
    assert r.status_code == 200
    r = await client.delete(url, headers=h)
    assert r.status_code == 409
    assert r.json()["used_by"][0]["as"] == "published version 1"
    assert (await client.post(f"/v1/flows/{flow}/publish", headers=h)).status_code == 201
    assert (await client.delete(url, headers=h)).status_code == 204


async def test_the_refusal_lists_queues_and_agents_too(client):
    t = await create_tenant(client)
    h = t["headers"]
    skill = (await client.post("/v1/skills", json={"name": "Billing"}, headers=h)).json()["id"]
    r = await client.post(
        "/v1/queues",
        json={"name": "Invoices", "channels": ["chat"], "required_skills": [{"skill_id": skill}]},
        headers=h,
    )
    queue = r.json()["id"]
    r = await client.post(
        "/v1/agents",
        json={
            "email": "maria@example.com",
            "display_name": "María López",
            "skills": [{"skill_id": skill, "proficiency": 3}],
        },
        headers=h,
    )
    assert r.status_code == 201, r.text
    agent = r.json()["id"]
    r = await client.delete(f"/v1/skills/{skill}", headers=h)
    assert r.status_code == 409 and r.json()["code"] == "skill-in-use"
    assert r.json()["used_by"] == [
        {"type": "queue", "id": queue, "name": "Invoices"},
        {"type": "agent", "id": agent, "name": "María López"},
    ]


async def test_another_tenants_flow_naming_the_id_does_not_count(client):
    a, b = await create_tenant(client), await create_tenant(client)
    skill = (await client.post("/v1/skills", json={"name": "VIP"}, headers=a["headers"])).json()
    queue = (
        await client.post(
            "/v1/queues", json={"name": "Sales", "channels": ["voice"]}, headers=b["headers"]
        )
    ).json()
    r = await client.post(
        "/v1/flows",
        json={"name": "Copied", "draft": asks_for(queue["id"], skill["id"])},
        headers=b["headers"],
    )
    assert r.status_code == 201
    r = await client.delete(f"/v1/skills/{skill['id']}", headers=a["headers"])
    assert r.status_code == 204, r.text
