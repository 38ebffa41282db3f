"""Tenant isolation, proven at SQL level as the runtime role."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from sqlalchemy import text

from app.db.engine import create_engine
from tests.conftest import create_tenant

# routing_work: which tenants have routing due (ids and a time, no content), read by
# the routing workers across the tenants of their shards.
PLATFORM_TABLES_WITH_TENANT_ID = {
    "login_emails",
    "number_claims",
    "channel_addresses",
    "routing_work",
    "outbound_work",
}


async def _set_tenant(conn: asyncpg.Connection, tenant_id: str) -> None:
    await conn.execute("SELECT set_config('app.tenant_id', $1, true)", tenant_id)


@pytest.fixture
async def two_tenants(client):
    a = await create_tenant(client, company_name="Alpha Co")
    b = await create_tenant(client, company_name="Beta Co")
    return a, b


async def test_runtime_role_is_not_owner_superuser_or_bypassrls(app_conn):
    row = await app_conn.fetchrow(
        "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
    )
    assert row["rolsuper"] is False and row["rolbypassrls"] is False
    owned = await app_conn.fetchval(
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner = current_user"
    )
    assert owned == 0


async def test_every_tenant_table_forces_row_level_security(app_conn):
    rows = await app_conn.fetch(
        """
        SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
               (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid) AS policies
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind = 'r'
          AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid
                      AND a.attname = 'tenant_id' AND NOT a.attisdropped)
        """
    )
    tenant_tables = [r for r in rows if r["relname"] not in PLATFORM_TABLES_WITH_TENANT_ID]
    assert len(tenant_tables) >= 7
    for r in tenant_tables:
        assert r["relrowsecurity"] and r["relforcerowsecurity"], r["relname"]
        assert r["policies"] >= 1, r["relname"]


async def test_no_tenant_set_sees_no_tenant_rows(two_tenants, app_conn):
    async with app_conn.transaction():
        for table in ("users", "api_keys", "audit_events", "email_verifications", "outbound_mail"):
            assert await app_conn.fetchval(f"SELECT count(*) FROM {table}") == 0, table


async def test_tenant_a_cannot_read_update_or_delete_b(two_tenants, app_conn):
    a, b = two_tenants
    b_user = b["user"]["id"]
    async with app_conn.transaction():
        await _set_tenant(app_conn, a["tenant"]["id"])
        ids = {str(r["tenant_id"]) for r in await app_conn.fetch("SELECT tenant_id FROM users")}
        assert ids == {a["tenant"]["id"]}
        assert (
            await app_conn.fetchval("SELECT count(*) FROM users WHERE id = $1", uuid.UUID(b_user))
            == 0
        )
        upd = await app_conn.execute(
            "UPDATE users SET display_name = 'pwned' WHERE id = $1", uuid.UUID(b_user)
        )
        assert upd == "UPDATE 0"
        dele = await app_conn.execute(
            "DELETE FROM api_keys WHERE tenant_id = $1", uuid.UUID(b["tenant"]["id"])
        )
        assert dele == "DELETE 0"
    # B's rows are untouched.
    async with app_conn.transaction():
        await _set_tenant(app_conn, b["tenant"]["id"])
        row = await app_conn.fetchrow(
            "SELECT display_name FROM users WHERE id = $1", uuid.UUID(b_user)
        )
        assert row is not None and row["display_name"] is None
        assert await app_conn.fetchval("SELECT count(*) FROM api_keys") == 1


async def test_inserting_a_row_for_b_under_a_is_refused(two_tenants, app_conn):
    a, b = two_tenants
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
        async with app_conn.transaction():
            await _set_tenant(app_conn, a["tenant"]["id"])
            await app_conn.execute(
                "INSERT INTO users (tenant_id, id, email, role, status, created_at) "
                "VALUES ($1, $2, 'x@example.com', 'admin', 'active', now())",
                uuid.UUID(b["tenant"]["id"]),
                uuid.uuid4(),
            )


async def test_moving_a_row_to_another_tenant_is_refused(two_tenants, app_conn):
    a, b = two_tenants
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with app_conn.transaction():
            await _set_tenant(app_conn, a["tenant"]["id"])
            await app_conn.execute("UPDATE users SET tenant_id = $1", uuid.UUID(b["tenant"]["id"]))


async def test_pooled_connection_never_carries_a_tenant_into_the_next_transaction(
    two_tenants, db_urls
):
    a, _ = two_tenants
    engine = create_engine(db_urls.app, pool_size=1, max_overflow=0)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text("SELECT set_config('app.tenant_id', :t, true)"), {"t": a["tenant"]["id"]}
            )
            assert (await conn.execute(text("SELECT count(*) FROM users"))).scalar() == 1
            pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar()
        # Committed: the same pooled connection now carries no tenant.
        async with engine.begin() as conn:
            assert (await conn.execute(text("SELECT pg_backend_pid()"))).scalar() == pid
            setting = (
                await conn.execute(text("SELECT current_setting('app.tenant_id', true)"))
            ).scalar()
            assert setting in (None, "")
            assert (await conn.execute(text("SELECT count(*) FROM users"))).scalar() == 0
        # Rolled back: same again.
        conn_cm = engine.connect()
        async with conn_cm as conn:
            await conn.execute(
                text("SELECT set_config('app.tenant_id', :t, true)"), {"t": a["tenant"]["id"]}
            )
            await conn.rollback()
        async with engine.begin() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM users"))).scalar() == 0
    finally:
        await engine.dispose()


async def test_ledgers_are_append_only_even_for_the_owner(two_tenants, app_conn, admin_conn):
    a, _ = two_tenants
    async with app_conn.transaction():
        await _set_tenant(app_conn, a["tenant"]["id"])
        assert await app_conn.fetchval("SELECT count(*) FROM audit_events") >= 1
    for stmt in ("UPDATE audit_events SET action = 'x'", "DELETE FROM audit_events"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with app_conn.transaction():
                await _set_tenant(app_conn, a["tenant"]["id"])
                await app_conn.execute(stmt)
    # The owner role (subject to FORCE RLS and the trigger) cannot rewrite history either.
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        async with admin_conn.transaction():
            await admin_conn.execute("SET LOCAL ROLE switchboard_owner")
            await admin_conn.execute(
                "SELECT set_config('app.tenant_id', $1, true)", a["tenant"]["id"]
            )
            await admin_conn.execute("DELETE FROM audit_events")


async def test_api_answers_404_for_another_tenants_resource(client, two_tenants):
    a, b = two_tenants
    r = await client.get("/v1/api-keys", headers=b["headers"])
    b_key_id = r.json()["items"][0]["id"]
    r = await client.get(f"/v1/api-keys/{b_key_id}", headers=a["headers"])
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    r = await client.delete(f"/v1/api-keys/{b_key_id}", headers=a["headers"])
    assert r.status_code == 404
    r = await client.get("/v1/me", headers=b["headers"])
    assert r.status_code == 200  # B's key still works
