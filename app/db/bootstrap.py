"""Database bootstrap: roles, database, and migrations to head.

Three roles: the owner (owns every table, runs migrations), the runtime role
(LOGIN, NOSUPERUSER, NOBYPASSRLS, not the owner) and the routing workers' role (the
same, limited by policy to the routing rows of the shards it leases). When the
configured connection is a superuser, migrations run under ``SET ROLE <owner>`` so that
no table belongs to a superuser; when it is the owner itself (RDS), they run as it.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from pydantic import SecretStr
from sqlalchemy.engine import URL, make_url

from app.config import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent.parent / "migrations"


@dataclass(frozen=True)
class DatabaseUrls:
    admin: str  # migrating connection, to the application database
    app: str  # runtime role, to the application database
    router: str = ""  # routing workers' role, to the application database


def asyncpg_kwargs(url: str) -> dict[str, Any]:
    u = make_url(url)
    kw: dict[str, object] = {"user": u.username, "database": u.database}
    if u.password:
        kw["password"] = u.password
    host = u.query.get("host") or u.host
    if isinstance(host, tuple):
        host = host[0]
    if host:
        kw["host"] = host
    if u.port:
        kw["port"] = u.port
    return kw


def _with(url: str, **parts: object) -> str:
    u: URL = make_url(url)
    return u.set(**parts).render_as_string(hide_password=False)  # type: ignore[arg-type]


def urls_for(settings: Settings, admin_url: str, database: str | None = None) -> DatabaseUrls:
    db = database or make_url(admin_url).database or settings.db_name
    admin = _with(admin_url, database=db)
    if settings.app_database_url and database is None:
        app_url = settings.app_database_url
    else:
        pw = settings.app_db_password.get_secret_value() if settings.app_db_password else None
        app_url = _with(admin_url, database=db, username=settings.app_role, password=pw)
    if settings.router_database_url and database is None:
        router_url = settings.router_database_url
    else:
        rpw = _secret(settings.router_db_password)
        router_url = _with(admin_url, database=db, username=settings.router_role, password=rpw)
    return DatabaseUrls(admin=admin, app=app_url, router=router_url)


def router_url_like(settings: Settings, app_url: str) -> str:
    """The routing workers' URL: the runtime role's, as the router role."""
    if settings.router_database_url:
        return settings.router_database_url
    return _with(
        app_url, username=settings.router_role, password=_secret(settings.router_db_password)
    )


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value else None


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def ensure_database(settings: Settings, admin_url: str, database: str) -> None:
    """Create the roles and the database when missing (idempotent, safe to race)."""
    conn = await asyncpg.connect(**asyncpg_kwargs(_with(admin_url, database="postgres")))  # type: ignore[arg-type]
    try:
        is_super = await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        owner = settings.owner_role if is_super else await conn.fetchval("SELECT current_user")
        if is_super:
            await _create_role(conn, f"CREATE ROLE {_ident(owner)} NOLOGIN NOSUPERUSER NOBYPASSRLS")
        pw = settings.app_db_password.get_secret_value() if settings.app_db_password else None
        rpw = _secret(settings.router_db_password)
        for role, password in ((settings.app_role, pw), (settings.router_role, rpw)):
            stmt = (
                f"CREATE ROLE {_ident(role)} LOGIN NOSUPERUSER NOBYPASSRLS "
                "NOCREATEDB NOCREATEROLE NOINHERIT"
            )
            if password:
                stmt += " PASSWORD " + "'" + password.replace("'", "''") + "'"
            await _create_role(conn, stmt)
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await conn.execute(f"CREATE DATABASE {_ident(database)} OWNER {_ident(owner)}")
        await conn.execute(f"REVOKE ALL ON DATABASE {_ident(database)} FROM PUBLIC")
        app_role = _ident(settings.app_role)
        await conn.execute(f"GRANT CONNECT, TEMPORARY ON DATABASE {_ident(database)} TO {app_role}")
        router_role = _ident(settings.router_role)
        await conn.execute(f"GRANT CONNECT ON DATABASE {_ident(database)} TO {router_role}")
    finally:
        await conn.close()


async def _create_role(conn: asyncpg.Connection, stmt: str) -> None:
    # Exists already, or another process created it just now.
    with contextlib.suppress(asyncpg.DuplicateObjectError, asyncpg.UniqueViolationError):
        await conn.execute(stmt)


async def drop_database(admin_url: str, database: str) -> None:
    conn = await asyncpg.connect(**asyncpg_kwargs(_with(admin_url, database="postgres")))  # type: ignore[arg-type]
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {_ident(database)} WITH (FORCE)")
    finally:
        await conn.close()


def alembic_config(admin_url: str):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    cfg = Config(str(MIGRATIONS_DIR.parent / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["admin_url"] = admin_url
    return cfg


def migrate(admin_url: str, revision: str = "head") -> None:
    """alembic upgrade (sync entry point; runs its own event loop)."""
    from alembic import command

    command.upgrade(alembic_config(admin_url), revision)


async def migrate_async(admin_url: str, revision: str = "head") -> None:
    await asyncio.to_thread(migrate, admin_url, revision)


def head_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return set(ScriptDirectory.from_config(alembic_config("")).get_heads())
