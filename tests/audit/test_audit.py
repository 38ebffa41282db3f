from __future__ import annotations

from tests.conftest import create_tenant, login


async def test_mutations_are_audited_with_actor_action_target(client):
    t = await create_tenant(client)
    tokens = await login(client, t["email"])
    r = await client.post("/v1/api-keys", json={"name": "ci"}, headers=tokens["headers"])
    key_id = r.json()["api_key"]["id"]
    await client.delete(f"/v1/api-keys/{key_id}", headers=t["headers"])
    # A refused mutation records nothing.
    await client.post("/v1/api-keys", json={"name": ""}, headers=t["headers"])
    events = (await client.get("/v1/audit-events", headers=t["headers"])).json()["items"]
    actions = [e["action"] for e in events]
    assert actions == ["api_key.revoke", "api_key.create", "auth.login", "tenant.signup"]
    revoke, create, login_ev, signup = events
    assert create["actor_type"] == "user" and create["actor_id"] == t["user"]["id"]
    assert create["target_type"] == "api_key" and create["target_id"] == key_id
    assert revoke["actor_type"] == "api_key"
    assert signup["target_id"] == t["tenant"]["id"]
    assert all(e["request_id"] and e["occurred_at"] for e in events)
    assert login_ev["client_address"] == "203.0.113.7"


async def test_audit_log_is_per_tenant_paginated_and_filterable(client):
    a = await create_tenant(client)
    b = await create_tenant(client)
    for i in range(4):
        await client.post("/v1/api-keys", json={"name": f"k{i}"}, headers=a["headers"])
    page1 = (await client.get("/v1/audit-events", params={"limit": 2}, headers=a["headers"])).json()
    assert len(page1["items"]) == 2 and page1["next_cursor"]
    page2 = (
        await client.get(
            "/v1/audit-events",
            params={"limit": 10, "cursor": page1["next_cursor"]},
            headers=a["headers"],
        )
    ).json()
    assert len(page2["items"]) == 3 and page2["next_cursor"] is None
    only = (
        await client.get(
            "/v1/audit-events", params={"action": "api_key.create"}, headers=a["headers"]
        )
    ).json()["items"]
    assert len(only) == 4
    b_events = (await client.get("/v1/audit-events", headers=b["headers"])).json()["items"]
    assert [e["action"] for e in b_events] == ["tenant.signup"]
