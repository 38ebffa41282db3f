"""Test harness: a real PostgreSQL, schema built by the migrations, one database per
xdist worker, every table emptied after each test."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from app.auth.jwt_keys import new_key
from app.config import Settings
from app.db import bootstrap
from app.db.embedded import EmbeddedPostgres


def _asyncpg_kwargs(url: str) -> dict[str, Any]:
    return bootstrap.asyncpg_kwargs(url)


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """SWITCHBOARD_DATABASE_URL (set by `make test`), else a private embedded server."""
    url = os.environ.get("SWITCHBOARD_DATABASE_URL")
    if url:
        yield url
        return
    # Not under pytest's 0700 tmp dir: as root, the server runs as another user.
    base = Path(tempfile.mkdtemp(prefix="switchboard-test-pg-"))
    base.chmod(0o755)
    pg = EmbeddedPostgres(base / "data", durable=False)
    pg.start()
    try:
        yield pg.url("postgres")
    finally:
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    key = new_key()
    return Settings(
        environment="test",
        data_dir=tmp_path_factory.mktemp("data"),
        jwt_keys=json.dumps({"active_kid": key["kid"], "keys": [key]}),  # type: ignore[arg-type]
        mail_backend="dev",
        # The cheapest argon2id cost: every test signs up and logs in, and the default
        # cost (~0.1 s of CPU a hash) was a large share of the suite's time. The
        # production cost is exercised by tests/cli (their servers get no test settings).
        argon2_time_cost=1,
        argon2_memory_cost=8,
        argon2_parallelism=1,
    )


@pytest.fixture(scope="session")
async def db_urls(
    server_url: str, settings: Settings, worker_id: str
) -> AsyncIterator[bootstrap.DatabaseUrls]:
    name = f"sb_test_{worker_id}_{os.getpid()}"
    await bootstrap.ensure_database(settings, server_url, name)
    urls = bootstrap.urls_for(settings, server_url, database=name)
    await bootstrap.migrate_async(urls.admin)
    try:
        yield urls
    finally:
        await bootstrap.drop_database(server_url, name)


@pytest.fixture(scope="session")
async def admin_conn(db_urls: bootstrap.DatabaseUrls) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(**_asyncpg_kwargs(db_urls.admin))
    try:
        yield conn
    finally:
        await conn.close()


# Empties every table in one round trip. DELETE, not TRUNCATE: a test leaves a few rows
# in a handful of tables, and TRUNCATE of all of them (new files for each table and
# index) took ~0.3 s a test, DELETE ~3 ms. With session_replication_role = replica no
# trigger fires, so foreign keys do not constrain the order and the append-only tables
# (audit, usage) empty too; it takes a superuser, who also bypasses row-level security.
_DELETE_ALL_ROWS = """
DO $$
DECLARE t text;
BEGIN
  SET LOCAL session_replication_role = replica;
  FOR t IN SELECT tablename FROM pg_tables
           WHERE schemaname = 'public' AND tablename NOT IN ('alembic_version', 'routing_shards')
  LOOP
    EXECUTE format('DELETE FROM public.%I', t);
  END LOOP;
  -- The shard rows are the migration's reference data: keep them, free their leases.
  UPDATE routing_shards SET owner = NULL, lease_expires_at = NULL, epoch = 0;
END $$
"""


@pytest.fixture(scope="session")
async def admin_is_superuser(admin_conn: asyncpg.Connection) -> bool:
    return bool(
        await admin_conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    )


@pytest.fixture
async def clean_db(
    admin_conn: asyncpg.Connection, admin_is_superuser: bool
) -> AsyncIterator[asyncpg.Connection]:
    """Every test that touches the database leaves it empty for the next one."""
    yield admin_conn
    if admin_is_superuser:
        await admin_conn.execute(_DELETE_ALL_ROWS)
        return
    tables = await admin_conn.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
        "AND tablename NOT IN ('alembic_version', 'routing_shards')"
    )
    if tables:
        await admin_conn.execute("TRUNCATE " + ", ".join(f'"{t[0]}"' for t in tables) + " CASCADE")
    await admin_conn.execute("UPDATE routing_shards SET owner = NULL, lease_expires_at = NULL")


@pytest.fixture
async def app_conn(
    db_urls: bootstrap.DatabaseUrls, clean_db: asyncpg.Connection
) -> AsyncIterator[asyncpg.Connection]:
    """A raw connection as the runtime role (NOSUPERUSER, NOBYPASSRLS, not the owner)."""
    conn = await asyncpg.connect(**_asyncpg_kwargs(db_urls.app))
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture(scope="session")
async def app(settings: Settings, db_urls: bootstrap.DatabaseUrls) -> AsyncIterator[Any]:
    from app.main import create_app

    application = create_app(settings, app_database_url=db_urls.app)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: Any, clean_db: asyncpg.Connection) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


STRONG_PASSWORD = "correct horse battery staple 42"


def unique_email(prefix: str = "owner") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"


async def create_tenant(
    client: httpx.AsyncClient,
    *,
    company_name: str = "Acme Retail",
    email: str | None = None,
    password: str = STRONG_PASSWORD,
) -> dict[str, Any]:
    """Factory: a tenant signed up through the API; returns the body plus credentials."""
    email = email or unique_email()
    r = await client.post(
        "/v1/signup", json={"company_name": company_name, "email": email, "password": password}
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    body["email"], body["password"] = email, password
    body["headers"] = {"Authorization": f"Bearer {body['api_key']}"}
    return body


async def login(
    client: httpx.AsyncClient, email: str, password: str = STRONG_PASSWORD
) -> dict[str, Any]:
    r = await client.post("/v1/auth/token", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    tokens: dict[str, Any] = r.json()
    tokens["headers"] = {"Authorization": f"Bearer {tokens['access_token']}"}
    return tokens


ROOT = Path(__file__).resolve().parent.parent


async def create_user(
    app: Any,
    tenant: dict[str, Any],
    role: str,
    *,
    email: str | None = None,
    password: str = STRONG_PASSWORD,
) -> dict[str, Any]:
    """Factory: a user of ``tenant`` with ``role``, made through the users service."""
    from app.db.tenant import bind_tenant, mint_scope
    from app.users.service import create_user as svc_create_user

    email = email or unique_email(role)
    scope = mint_scope(uuid.UUID(tenant["tenant"]["id"]))
    async with app.state.session_factory() as session, session.begin():
        await bind_tenant(session, scope)
        user = await svc_create_user(session, scope, email=email, role=role, password=password)
    return {"id": str(user.id), "email": email, "password": password, "role": role}
