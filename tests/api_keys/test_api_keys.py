from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.conftest import create_tenant, create_user, login


async def test_create_list_use_and_revoke(client, admin_conn):
    t = await create_tenant(client)
    r = await client.post(
        "/v1/api-keys",
        json={"name": "CRM sync", "scopes": ["me", "audit:read"]},
        headers=t["headers"],
    )
    assert r.status_code == 201, r.text
    created = r.json()
    key, meta = created["key"], created["api_key"]
    assert key.startswith(meta["prefix"]) and meta["scopes"] == ["audit:read", "me"]
    assert meta["last_used_at"] is None
    # The secret is stored only as a hash.
    stored = await admin_conn.fetchval(
        "SELECT secret_hash FROM api_keys WHERE id = $1::uuid", meta["id"]
    )
    assert key not in stored and key.split("_", 1)[1] not in stored
    h = {"Authorization": f"Bearer {key}"}
    assert (await client.get("/v1/audit-events", headers=h)).status_code == 200
    r = await client.get("/v1/api-keys", headers=h)
    assert r.status_code == 403 and r.json()["required_scope"] == "api_keys:read"
    listed = (await client.get("/v1/api-keys", headers=t["headers"])).json()["items"]
    assert {k["name"] for k in listed} == {"Default key", "CRM sync"}
    assert all("key" not in k and "secret_hash" not in k for k in listed)
    used = next(k for k in listed if k["id"] == meta["id"])
    assert used["last_used_at"] is not None
    r = await client.delete(f"/v1/api-keys/{meta['id']}", headers=t["headers"])
    assert r.status_code == 204
    r = await client.get("/v1/me", headers=h)
    assert r.status_code == 401
    got = (await client.get(f"/v1/api-keys/{meta['id']}", headers=t["headers"])).json()
    assert got["revoked_at"] is not None


async def test_key_scopes_never_exceed_the_creators(client, app):
    t = await create_tenant(client)
    sup = await create_user(app, t, "supervisor")
    admin = await create_user(app, t, "admin")
    admin_h = (await login(client, admin["email"]))["headers"]
    r = await client.post(
        "/v1/api-keys", json={"name": "x", "scopes": ["tenant:write"]}, headers=admin_h
    )
    assert r.status_code == 422 and r.json()["field"] == "body.scopes.0"
    r = await client.post(
        "/v1/api-keys", json={"name": "x", "scopes": ["me", "no:such"]}, headers=admin_h
    )
    assert r.status_code == 422 and r.json()["field"] == "body.scopes.1"
    r = await client.post("/v1/api-keys", json={"name": "all"}, headers=admin_h)
    assert r.status_code == 201 and "tenant:write" not in r.json()["api_key"]["scopes"]
    # Supervisors cannot mint keys at all.
    sup_h = (await login(client, sup["email"]))["headers"]
    assert (await client.post("/v1/api-keys", json={"name": "x"}, headers=sup_h)).status_code == 403


async def test_a_key_cannot_mint_a_broader_key(client):
    t = await create_tenant(client)
    r = await client.post(
        "/v1/api-keys",
        json={"name": "narrow", "scopes": ["api_keys:write", "me"]},
        headers=t["headers"],
    )
    narrow = {"Authorization": f"Bearer {r.json()['key']}"}
    r = await client.post(
        "/v1/api-keys", json={"name": "wide", "scopes": ["audit:read"]}, headers=narrow
    )
    assert r.status_code == 422
    r = await client.post("/v1/api-keys", json={"name": "same"}, headers=narrow)
    assert r.status_code == 201
    assert r.json()["api_key"]["scopes"] == ["api_keys:write", "me"]


async def test_expired_keys_stop_working(client, admin_conn):
    t = await create_tenant(client)
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    r = await client.post(
        "/v1/api-keys", json={"name": "temp", "expires_at": soon}, headers=t["headers"]
    )
    assert r.status_code == 201
    h = {"Authorization": f"Bearer {r.json()['key']}"}
    assert (await client.get("/v1/me", headers=h)).status_code == 200
    await admin_conn.execute(
        "UPDATE api_keys SET expires_at = now() - interval '1 s' WHERE id = $1::uuid",
        r.json()["api_key"]["id"],
    )
    assert (await client.get("/v1/me", headers=h)).status_code == 401
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    r = await client.post(
        "/v1/api-keys", json={"name": "old", "expires_at": past}, headers=t["headers"]
    )
    assert r.status_code == 422 and r.json()["field"] == "body.expires_at"
    r = await client.post(
        "/v1/api-keys",
        json={"name": "naive", "expires_at": "2030-01-01T00:00:00"},
        headers=t["headers"],
    )
    assert r.status_code == 422 and r.json()["field"] == "body.expires_at"


async def test_pagination_walks_every_key_once(client):
    t = await create_tenant(client)
    for i in range(7):
        r = await client.post("/v1/api-keys", json={"name": f"k{i}"}, headers=t["headers"])
        assert r.status_code == 201
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/v1/api-keys", params=params, headers=t["headers"])).json()
        seen += [k["id"] for k in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == 8 == len(set(seen))
    r = await client.get("/v1/api-keys", params={"cursor": "!!notacursor"}, headers=t["headers"])
    assert r.status_code == 422 and r.json()["field"] == "query.cursor"
    r = await client.get("/v1/api-keys", params={"limit": 0}, headers=t["headers"])
    assert r.status_code == 422 and r.json()["field"] == "query.limit"
