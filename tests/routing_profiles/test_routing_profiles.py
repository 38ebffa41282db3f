from __future__ import annotations

import uuid

import pytest

from app.routing_profiles.models import DEFAULT_CHANNEL_COSTS
from tests.conftest import create_tenant, create_user, login

URL = "/v1/routing-profiles"


async def test_crud_with_queues_and_etags(client, make_queue):
    t = await create_tenant(client)
    h = t["headers"]
    q1, q2 = await make_queue(t, "Billing"), await make_queue(t, "Sales")

    r = await client.post(URL, json={"name": "Defaults"}, headers=h)
    assert r.status_code == 201, r.text
    assert r.json()["capacity_points"] == 100
    assert r.json()["channel_costs"] == DEFAULT_CHANNEL_COSTS and r.json()["queues"] == []

    body = {
        "name": "Tier 1",
        "capacity_points": 120,
        "channel_costs": {"voice": 120, "chat": 40},
        "queues": [
            {"queue_id": q2, "priority": 2, "delay_seconds": 30},
            {"queue_id": q1},
        ],
    }
    r = await client.post(URL, json=body, headers=h)
    assert r.status_code == 201 and r.headers["etag"] == '"1"'
    profile = r.json()
    assert profile["channel_costs"] == {"voice": 120, "chat": 40}  # only the channels sent
    assert profile["queues"] == [
        {"queue_id": q1, "priority": 1, "delay_seconds": 0},
        {"queue_id": q2, "priority": 2, "delay_seconds": 30},
    ]
    pid = profile["id"]
    r = await client.get(f"{URL}/{pid}", headers=h)
    assert r.json() == profile and r.headers["etag"] == '"1"'

    # Queues sent replace the set; the version moves on.
    r = await client.patch(
        f"{URL}/{pid}",
        json={"queues": [{"queue_id": q2, "priority": 1}], "capacity_points": 200},
        headers=h | {"If-Match": '"1"'},
    )
    assert r.status_code == 200 and r.headers["etag"] == '"2"'
    assert r.json()["queues"] == [{"queue_id": q2, "priority": 1, "delay_seconds": 0}]
    assert r.json()["capacity_points"] == 200

    # A stale ETag answers 412 and changes nothing.
    r = await client.patch(f"{URL}/{pid}", json={"name": "Stale"}, headers=h | {"If-Match": '"1"'})
    assert r.status_code == 412 and r.json()["code"] == "precondition-failed"
    assert (await client.get(f"{URL}/{pid}", headers=h)).json()["name"] == "Tier 1"

    # The same values again: no new version.
    r = await client.patch(
        f"{URL}/{pid}",
        json={
            "queues": [{"queue_id": q2, "priority": 1}],
            "channel_costs": {"voice": 120, "chat": 40},
        },
        headers=h,
    )
    assert r.status_code == 200 and r.headers["etag"] == '"2"'

    # Newest first, a page at a time.
    r = await client.get(URL, params={"limit": 1}, headers=h)
    assert [p["name"] for p in r.json()["items"]] == ["Tier 1"]
    r = await client.get(URL, params={"cursor": r.json()["next_cursor"]}, headers=h)
    assert [p["name"] for p in r.json()["items"]] == ["Defaults"]
    assert r.json()["next_cursor"] is None

    r = await client.delete(f"{URL}/{pid}", headers=h | {"If-Match": '"1"'})
    assert r.status_code == 412
    assert (await client.delete(f"{URL}/{pid}", headers=h | {"If-Match": '"2"'})).status_code == 204
    assert (await client.get(f"{URL}/{pid}", headers=h)).status_code == 404

    events = (await client.get("/v1/audit-events", headers=h)).json()["items"]
    actions = {e["action"] for e in events}
    assert {"routing_profile.create", "routing_profile.update", "routing_profile.delete"} <= actions


async def test_names_per_tenant_and_nothing_crosses_tenants(client, make_queue):
    a, b = await create_tenant(client), await create_tenant(client)
    qa = await make_queue(a, "Support")
    r = await client.post(URL, json={"name": "Chat only"}, headers=a["headers"])
    pid = r.json()["id"]
    r = await client.post(URL, json={"name": "  CHAT   only "}, headers=a["headers"])
    assert r.status_code == 409 and r.json()["code"] == "routing-profile-name-taken"
    assert r.json()["field"] == "body.name"

    # Tenant B may use the same name, sees only its own, and cannot reach A's.
    r = await client.post(URL, json={"name": "Chat only"}, headers=b["headers"])
    assert r.status_code == 201
    assert len((await client.get(URL, headers=b["headers"])).json()["items"]) == 1
    for method in ("GET", "PATCH", "DELETE"):
        r = await client.request(
            method,
            f"{URL}/{pid}",
            headers=b["headers"],
            json={"name": "mine"} if method == "PATCH" else None,
        )
        assert r.status_code == 404 and r.json()["code"] == "routing-profile-not-found", method
    # A's queue is as unknown to B as a made-up one.
    r = await client.post(
        URL, json={"name": "Sneaky", "queues": [{"queue_id": qa}]}, headers=b["headers"]
    )
    assert r.status_code == 422 and r.json()["code"] == "unknown-queue"
    assert r.json()["field"] == "body.queues.0.queue_id"
    # Renaming onto another profile's name is refused too.
    r = await client.post(URL, json={"name": "Voice"}, headers=a["headers"])
    r = await client.patch(
        f"{URL}/{r.json()['id']}", json={"name": "chat ONLY"}, headers=a["headers"]
    )
    assert r.status_code == 409 and r.json()["field"] == "body.name"


BAD_CREATES = [
    ({"name": ""}, "body.name", "validation-failed"),
    ({"name": "a\nb"}, "body.name", "validation-failed"),
    ({"name": "x", "capacity_points": 0}, "body.capacity_points", "validation-failed"),
    ({"name": "x", "capacity_points": 1001}, "body.capacity_points", "validation-failed"),
    ({"name": "x", "capacity_points": "100"}, "body.capacity_points", "validation-failed"),
    ({"name": "x", "capacity_points": 50}, "body.capacity_points", "cost-exceeds-capacity"),
    ({"name": "x", "channel_costs": {"fax": 10}}, "body.channel_costs.fax", "validation-failed"),
    ({"name": "x", "channel_costs": {"chat": 0}}, "body.channel_costs.chat", "validation-failed"),
    ({"name": "x", "channel_costs": {"chat": 2.5}}, "body.channel_costs.chat", "validation-failed"),
    (
        {"name": "x", "channel_costs": {"chat": 30, "voice": 101}},
        "body.channel_costs.voice",
        "cost-exceeds-capacity",
    ),
    ({"name": "x", "channel_costs": {}}, "body.channel_costs", "validation-failed"),
    ({"name": "x", "channel_costs": [1]}, "body.channel_costs", "validation-failed"),
    ({"name": "x", "queues": {}}, "body.queues", "validation-failed"),
    (
        {"name": "x", "queues": [{"queue_id": "nope"}]},
        "body.queues.0.queue_id",
        "validation-failed",
    ),
    ({"name": "x", "queues": [{}]}, "body.queues.0.queue_id", "validation-failed"),
    (
        {"name": "x", "queues": [{"queue_id": "{q}", "priority": 0}]},
        "body.queues.0.priority",
        "validation-failed",
    ),
    (
        {"name": "x", "queues": [{"queue_id": "{q}", "priority": 101}]},
        "body.queues.0.priority",
        "validation-failed",
    ),
    (
        {"name": "x", "queues": [{"queue_id": "{q}", "delay_seconds": -1}]},
        "body.queues.0.delay_seconds",
        "validation-failed",
    ),
    (
        {"name": "x", "queues": [{"queue_id": "{q}", "delay_seconds": 3601}]},
        "body.queues.0.delay_seconds",
        "validation-failed",
    ),
    (
        {"name": "x", "queues": [{"queue_id": "{q}", "weight": 1}]},
        "body.queues.0.weight",
        "validation-failed",
    ),
    (
        {"name": "x", "queues": [{"queue_id": "{q}"}, {"queue_id": "{q}"}]},
        "body.queues.1.queue_id",
        "duplicate-queue",
    ),
    (
        {"name": "x", "queues": [{"queue_id": "{q}"}, {"queue_id": "{unknown}"}]},
        "body.queues.1.queue_id",
        "unknown-queue",
    ),
    ({"name": "x", "queues": [{"queue_id": "{q}"}] * 101}, "body.queues", "validation-failed"),
    ({"name": "x", "owner": "me"}, "body.owner", "validation-failed"),
]


def _fill(value, q):
    if isinstance(value, dict):
        return {k: _fill(v, q) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, q) for v in value]
    if value == "{q}":
        return q
    if value == "{unknown}":
        return str(uuid.uuid4())
    return value


@pytest.mark.parametrize("body,field,code", BAD_CREATES, ids=[f for _, f, _ in BAD_CREATES])
async def test_bad_create_names_the_field_and_writes_nothing(client, make_queue, body, field, code):
    t = await create_tenant(client)
    q = await make_queue(t, "Support")
    r = await client.post(URL, json=_fill(body, q), headers=t["headers"])
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert (r.json()["field"], r.json()["code"]) == (field, code)
    assert (await client.get(URL, headers=t["headers"])).json()["items"] == []


async def test_bad_updates_name_the_field_and_change_nothing(client, make_queue):
    t = await create_tenant(client)
    h = t["headers"]
    q = await make_queue(t, "Support")
    r = await client.post(URL, json={"name": "Base", "queues": [{"queue_id": q}]}, headers=h)
    pid, before = r.json()["id"], r.json()
    for body, field, code in (
        ({"capacity_points": 30}, "body.capacity_points", "cost-exceeds-capacity"),
        ({"channel_costs": {"voice": 101}}, "body.channel_costs.voice", "cost-exceeds-capacity"),
        (
            {"capacity_points": 50, "channel_costs": {"chat": 60}},
            "body.channel_costs.chat",
            "cost-exceeds-capacity",
        ),
        ({"name": None}, "body.name", "validation-failed"),
        ({"capacity_points": None}, "body.capacity_points", "validation-failed"),
        ({"queues": None}, "body.queues", "validation-failed"),
        ({"queues": [{"queue_id": str(uuid.uuid4())}]}, "body.queues.0.queue_id", "unknown-queue"),
        ({"version": 7}, "body.version", "validation-failed"),
    ):
        r = await client.patch(f"{URL}/{pid}", json=body, headers=h)
        assert r.status_code == 422, (body, r.text)
        assert (r.json()["field"], r.json()["code"]) == (field, code), body
    r = await client.get(f"{URL}/{pid}", headers=h)
    assert r.json() == before and r.headers["etag"] == '"1"'
    r = await client.patch(f"{URL}/not-a-uuid", json={}, headers=h)
    assert r.status_code == 422 and r.json()["field"] == "path.routing_profile_id"
    r = await client.patch(f"{URL}/{pid}", json={}, headers=h | {"If-Match": "x" * 300})
    assert r.status_code == 422 and r.json()["field"] == "header.If-Match"


async def test_a_profile_agents_use_cannot_be_deleted(client):
    t = await create_tenant(client)
    h = t["headers"]
    pid = (await client.post(URL, json={"name": "Voice"}, headers=h)).json()["id"]
    r = await client.post(
        "/v1/agents",
        json={"email": "ana@example.com", "display_name": "Ana", "routing_profile_id": pid},
        headers=h,
    )
    assert r.status_code == 201, r.text
    agent_id = r.json()["id"]
    r = await client.delete(f"{URL}/{pid}", headers=h)
    assert r.status_code == 409 and r.json()["code"] == "routing-profile-in-use"
    assert (await client.get(f"{URL}/{pid}", headers=h)).status_code == 200
    r = await client.patch(f"/v1/agents/{agent_id}", json={"routing_profile_id": None}, headers=h)
    assert r.status_code == 200 and r.json()["routing_profile_id"] is None
    assert (await client.delete(f"{URL}/{pid}", headers=h)).status_code == 204


async def test_idempotency_key_replays_the_first_answer(client, admin_conn):
    t = await create_tenant(client)
    h = t["headers"] | {"Idempotency-Key": "profile-1"}
    first = await client.post(URL, json={"name": "Email desk"}, headers=h)
    again = await client.post(URL, json={"name": "Email desk"}, headers=h)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert await admin_conn.fetchval("SELECT count(*) FROM routing_profiles") == 1
    r = await client.post(URL, json={"name": "Other"}, headers=h)
    assert r.status_code == 422 and r.json()["code"] == "idempotency-key-reused"


async def test_supervisors_read_and_agents_see_nothing(client, app):
    t = await create_tenant(client)
    await client.post(URL, json={"name": "Voice"}, headers=t["headers"])
    sup = await create_user(app, t, "supervisor")
    agent = await create_user(app, t, "agent")
    sh = (await login(client, sup["email"]))["headers"]
    ah = (await login(client, agent["email"]))["headers"]
    assert len((await client.get(URL, headers=sh)).json()["items"]) == 1
    r = await client.post(URL, json={"name": "Mine"}, headers=sh)
    assert r.status_code == 403 and r.json()["required_scope"] == "routing_profiles:write"
    assert (await client.get(URL, headers=ah)).status_code == 403
