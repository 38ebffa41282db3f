from __future__ import annotations


async def test_healthz_and_readyz(client):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    r = await client.get("/readyz")
    assert r.status_code == 200
    assert r.json()["database"] == "ok" and r.json()["migrations"] == "head"


async def test_readyz_says_when_migrations_are_behind(client, admin_conn):
    current = await admin_conn.fetchval("SELECT version_num FROM alembic_version")
    await admin_conn.execute("UPDATE alembic_version SET version_num = 'old'")
    try:
        r = await client.get("/readyz")
        assert r.status_code == 503 and r.json()["migrations"] == "behind"
    finally:
        await admin_conn.execute("UPDATE alembic_version SET version_num = $1", current)


async def test_every_response_carries_a_request_id(client):
    r = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    r = await client.get("/nope", headers={"X-Request-ID": "bad id with spaces"})
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["request_id"] == r.headers["x-request-id"] != "bad id with spaces"
