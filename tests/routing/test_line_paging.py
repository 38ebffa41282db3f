"""A blocked head of line does not hide the contacts behind it: the worker reads further
pages of a line when the first left agents with room."""

from __future__ import annotations

from tests.routing.conftest import enqueue, go_available, running_router, staffed_tenant, wait_offer


async def test_contacts_behind_a_blocked_head_are_offered(client, db_urls):
    t = await staffed_tenant(client, agents=1, skills=("Billing", "Mandarin"))
    agent = t["agents"][0]  # Billing only
    mandarin = t["skills"]["Mandarin"]
    # Six contacts nobody present can take, ahead of one anybody can.
    blocked = [
        await enqueue(
            client,
            t,
            t["queue"]["id"],
            required_skills=[{"skill_id": mandarin, "min_proficiency": 3}],
        )
        for _ in range(6)
    ]
    behind = await enqueue(client, t, t["queue"]["id"])
    await go_available(client, agent)
    # Three contacts a page per queue: the one behind is on the third page.
    async with running_router(db_urls, max_offers_per_tenant=3):
        offer = await wait_offer(client, agent, behind["id"])
    assert offer["contact_id"] == behind["id"]
    r = await client.get(f"/v1/contacts/{blocked[0]['id']}/routing", headers=t["headers"])
    assert r.json()["state"] == "queued"
    assert r.json()["now"]["agents"][0]["code"] in ("missing-skill", "no-capacity")
