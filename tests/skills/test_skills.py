from __future__ import annotations

import asyncio

from tests.conftest import create_tenant, create_user, login


async def test_crud_with_etags(client):
    t = await create_tenant(client)
    h = t["headers"]
    r = await client.post("/v1/skills", json={"name": "Spanish", "kind": "language"}, headers=h)
    assert r.status_code == 201 and r.headers["etag"] == '"1"'
    skill = r.json()
    r = await client.get(f"/v1/skills/{skill['id']}", headers=h)
    assert r.json()["name"] == "Spanish" and r.headers["etag"] == '"1"'
    r = await client.patch(
        f"/v1/skills/{skill['id']}", json={"description": "Native"}, headers=h | {"If-Match": '"1"'}
    )
    assert r.status_code == 200 and r.headers["etag"] == '"2"'
    # A stale ETag answers 412 and changes nothing.
    r = await client.patch(
        f"/v1/skills/{skill['id']}", json={"description": "Stale"}, headers=h | {"If-Match": '"1"'}
    )
    assert r.status_code == 412 and r.json()["code"] == "precondition-failed"
    assert r.json()["current_etag"] == '"2"'
    assert (await client.get(f"/v1/skills/{skill['id']}", headers=h)).json()[
        "description"
    ] == "Native"
    # A no-op update keeps the version.
    r = await client.patch(f"/v1/skills/{skill['id']}", json={"description": "Native"}, headers=h)
    assert r.headers["etag"] == '"2"'
    r = await client.delete(f"/v1/skills/{skill['id']}", headers=h | {"If-Match": '"1"'})
    assert r.status_code == 412
    r = await client.delete(f"/v1/skills/{skill['id']}", headers=h | {"If-Match": '"2"'})
    assert r.status_code == 204
    assert (await client.get(f"/v1/skills/{skill['id']}", headers=h)).status_code == 404


async def test_names_are_unique_per_tenant_only(client):
    a = await create_tenant(client)
    b = await create_tenant(client)
    assert (
        await client.post("/v1/skills", json={"name": "Billing"}, headers=a["headers"])
    ).status_code == 201
    r = await client.post("/v1/skills", json={"name": "  billing "}, headers=a["headers"])
    assert r.status_code == 409 and r.json()["code"] == "skill-name-taken"
    assert r.json()["field"] == "body.name"
    # The same name is fine in another tenant, which sees only its own.
    assert (
        await client.post("/v1/skills", json={"name": "Billing"}, headers=b["headers"])
    ).status_code == 201
    items = (await client.get("/v1/skills", headers=b["headers"])).json()["items"]
    assert len(items) == 1
    other_id = (await client.get("/v1/skills", headers=a["headers"])).json()["items"][0]["id"]
    for method in ("GET", "PATCH", "DELETE"):
        r = await client.request(
            method,
            f"/v1/skills/{other_id}",
            headers=b["headers"],
            json={"name": "x"} if method == "PATCH" else None,
        )
        assert r.status_code == 404, method


async def test_concurrent_creates_of_one_name_make_one_skill(client):
    t = await create_tenant(client)
    rs = await asyncio.gather(
        *[
            client.post("/v1/skills", json={"name": "Refunds"}, headers=t["headers"])
            for _ in range(4)
        ]
    )
    assert sorted(r.status_code for r in rs) == [201, 409, 409, 409]


async def test_idempotency_key_replays_the_first_answer(client, admin_conn):
    t = await create_tenant(client)
    h = t["headers"] | {"Idempotency-Key": "create-french-1"}
    first = await client.post("/v1/skills", json={"name": "French", "kind": "language"}, headers=h)
    again = await client.post("/v1/skills", json={"name": "French", "kind": "language"}, headers=h)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert again.headers["etag"] == first.headers["etag"] == '"1"'
    assert await admin_conn.fetchval("SELECT count(*) FROM skills") == 1
    r = await client.post("/v1/skills", json={"name": "German"}, headers=h)
    assert r.status_code == 422 and r.json()["code"] == "idempotency-key-reused"
    # Keys are per tenant.
    other = await create_tenant(client)
    r = await client.post(
        "/v1/skills",
        json={"name": "French", "kind": "language"},
        headers=other["headers"] | {"Idempotency-Key": "create-french-1"},
    )
    assert r.status_code == 201 and r.json()["id"] != first.json()["id"]


async def test_concurrent_retries_with_one_key_create_once(client, admin_conn):
    t = await create_tenant(client)
    h = t["headers"] | {"Idempotency-Key": "race-1"}
    rs = await asyncio.gather(
        *[client.post("/v1/skills", json={"name": "Chat"}, headers=h) for _ in range(4)]
    )
    assert all(r.status_code == 201 for r in rs)
    assert len({r.json()["id"] for r in rs}) == 1
    assert await admin_conn.fetchval("SELECT count(*) FROM skills") == 1


async def test_a_failed_first_attempt_does_not_poison_the_key(client):
    t = await create_tenant(client)
    await client.post("/v1/skills", json={"name": "Taken"}, headers=t["headers"])
    h = t["headers"] | {"Idempotency-Key": "k-fail"}
    r = await client.post("/v1/skills", json={"name": "Taken"}, headers=h)
    assert r.status_code == 409
    await client.delete(
        f"/v1/skills/{(await client.get('/v1/skills', headers=t['headers'])).json()['items'][0]['id']}",
        headers=t["headers"],
    )
    r = await client.post("/v1/skills", json={"name": "Taken"}, headers=h)
    assert r.status_code == 201


async def test_bad_input_names_the_field(client):
    t = await create_tenant(client)
    h = t["headers"]
    for body, field in (
        ({"name": ""}, "body.name"),
        ({"name": "x" * 101}, "body.name"),
        ({"name": "ok", "kind": "dance"}, "body.kind"),
        ({"name": "ok", "description": "a\x00b"}, "body.description"),
        ({"name": "ok", "extra": 1}, "body.extra"),
        ({"name": "ok\nnewline"}, "body.name"),
    ):
        r = await client.post("/v1/skills", json=body, headers=h)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["field"] == field
    r = await client.post(
        "/v1/skills", json={"name": "ok"}, headers=h | {"Idempotency-Key": "bad key with spaces"}
    )
    assert r.status_code == 422 and r.json()["field"] == "header.Idempotency-Key"
    r = await client.get("/v1/skills/not-a-uuid", headers=h)
    assert r.status_code == 422 and r.json()["field"] == "path.skill_id"
    assert (await client.get("/v1/skills", headers=h)).json()["items"] == []


async def test_agents_cannot_write_skills_but_supervisors_can_read(client, app):
    t = await create_tenant(client)
    agent = await create_user(app, t, "agent")
    sup = await create_user(app, t, "supervisor")
    ah = (await login(client, agent["email"]))["headers"]
    sh = (await login(client, sup["email"]))["headers"]
    assert (await client.get("/v1/skills", headers=ah)).status_code == 403
    assert (await client.get("/v1/skills", headers=sh)).status_code == 200
    r = await client.post("/v1/skills", json={"name": "x"}, headers=sh)
    assert r.status_code == 403 and r.json()["required_scope"] == "skills:write"


async def test_quotas_report_plan_limits(client):
    t = await create_tenant(client)
    r = await client.get("/v1/quotas", headers=t["headers"])
    assert r.status_code == 200
    body = r.json()
    assert body["plan"] == "trial"
    assert {q["resource"] for q in body["quotas"]} == {
        "queues",
        "agents",
        "phone_numbers",
        "channels",
        "concurrent_contacts",
    }
    assert all(q["used"] == 0 and q["limit"] for q in body["quotas"])
