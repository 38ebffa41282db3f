"""Business hours that a contact flow checks cannot be deleted: flows name them inside
their graphs (no foreign key), so the hours service asks the flows which use them."""

from __future__ import annotations

from typing import Any

import httpx

from tests.business_hours.test_business_hours import make_hours
from tests.conftest import create_tenant

Tenant = dict[str, Any]
GOODBYE: dict[str, Any] = {"start": "bye", "nodes": {"bye": {"type": "end"}}}


def checks(hours_id: str) -> dict[str, Any]:
    return {
        "start": "hours",
        "nodes": {
            "hours": {
                "type": "check_hours",
                "business_hours_id": hours_id,
                "open": "bye",
                "closed": "bye",
            },
            "bye": {"type": "end"},
        },
    }


async def make_flow(client: httpx.AsyncClient, t: Tenant, name: str, draft: Any) -> str:
    r = await client.post("/v1/flows", json={"name": name, "draft": draft}, headers=t["headers"])
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def test_hours_a_flow_checks_cannot_be_deleted(client):
    t = await create_tenant(client)
    h = t["headers"]
    hours = await make_hours(client, t)
    url = f"/v1/business-hours/{hours['id']}"
    r = await client.post(
        "/v1/queues",
        json={"name": "Billing", "channels": ["voice"], "business_hours_id": hours["id"]},
        headers=h,
    )
    queue = r.json()
    flow = await make_flow(client, t, "Main line", checks(hours["id"]))
    assert (await client.post(f"/v1/flows/{flow}/publish", headers=h)).status_code == 201
    r = await client.patch(f"/v1/flows/{flow}", json={"draft": GOODBYE}, headers=h)
    assert r.status_code == 200

    r = await client.delete(url, headers=h)
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "business-hours-in-use"
    assert r.json()["used_by"] == [
        {"type": "queue", "id": queue["id"], "name": "Billing"},
        {"type": "flow", "id": flow, "name": "Main line", "as": "published version 1"},
    ]
    await client.patch(f"/v1/queues/{queue['id']}", json={"business_hours_id": None}, headers=h)
    r = await client.delete(url, headers=h)
    assert r.status_code == 409 and [u["type"] for u in r.json()["used_by"]] == ["flow"]

    # Publishing the draft that no longer checks them frees the hours.
    assert (await client.post(f"/v1/flows/{flow}/publish", headers=h)).status_code == 201
    assert (await client.delete(url, headers=h)).status_code == 204
    # A flow drafted with them afterwards cannot publish.
    r = await client.patch(f"/v1/flows/{flow}", json={"draft": checks(hours["id"])}, headers=h)
    assert [p["code"] for p in r.json()["problems"]] == ["unknown-business-hours"]
    r = await client.post(f"/v1/flows/{flow}/publish", headers=h)
    assert r.status_code == 422 and r.json()["code"] == "flow-invalid"


async def test_a_draft_alone_keeps_the_hours(client):
    t = await create_tenant(client)
    hours = await make_hours(client, t)
    flow = await make_flow(client, t, "Half built", checks(hours["id"]))
    r = await client.delete(f"/v1/business-hours/{hours['id']}", headers=t["headers"])
    assert r.status_code == 409
    assert r.json()["used_by"] == [
        {"type": "flow", "id": flow, "name": "Half built", "as": "draft"}
    ]
