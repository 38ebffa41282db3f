"""Every query of proactive rules and decisions."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import tenant_rows
from app.db.tenant import TenantScope
from app.proactive.models import ProactiveRule
from app.routing.connection import raw

DECISION_COLUMNS = "id, customer_id, rule_id, channel, decision, reason, detail, at"


async def get(
    session: AsyncSession, scope: TenantScope, rule_id: uuid.UUID, *, for_update: bool = False
) -> ProactiveRule | None:
    lock: tenant_rows.Lock | None = "update" if for_update else None
    return await tenant_rows.get(session, ProactiveRule, scope, rule_id, lock=lock)


async def get_by_name(session: AsyncSession, scope: TenantScope, name: str) -> ProactiveRule | None:
    return await tenant_rows.get_by_name(session, ProactiveRule, scope, name)


async def list_page(
    session: AsyncSession, scope: TenantScope, limit: int, after_id: uuid.UUID | None
) -> list[ProactiveRule]:
    return await tenant_rows.list_page(session, ProactiveRule, scope, limit, after_id)


async def channel_type(
    session: AsyncSession, scope: TenantScope, channel_id: uuid.UUID
) -> str | None:
    """The type of the tenant's channel, or None. Locked FOR KEY SHARE until the
    transaction ends, so the channel cannot be deleted (which a rule on it refuses) while
    a rule is pointed at it."""
    conn = await raw(session)
    found = await conn.fetchval(
        "SELECT type FROM channels WHERE tenant_id = $1 AND id = $2 FOR KEY SHARE",
        scope.tenant_id,
        channel_id,
    )
    return str(found) if found is not None else None


async def enabled_rules(
    conn: asyncpg.Connection, scope: TenantScope, channel_id: uuid.UUID
) -> list[asyncpg.Record]:
    """The rules that apply to a webchat channel, in evaluation order."""
    return list(
        await conn.fetch(
            "SELECT id, name, conditions, action, message, priority FROM proactive_rules "
            "WHERE tenant_id = $1 AND enabled AND (channel_id IS NULL OR channel_id = $2) "
            "ORDER BY priority, created_at, id",
            scope.tenant_id,
            channel_id,
        )
    )


async def list_decisions(
    session: AsyncSession,
    scope: TenantScope,
    limit: int,
    after_id: uuid.UUID | None,
    *,
    customer_id: uuid.UUID | None = None,
    decision: str | None = None,
    rule_id: uuid.UUID | None = None,
) -> list[asyncpg.Record]:
    """Decisions newest first (ids are time-ordered), ``limit + 1`` of them."""
    conn = await raw(session)
    where = ["tenant_id = $1"]
    args: list[Any] = [scope.tenant_id]
    for test, value in (
        ("customer_id =", customer_id),
        ("decision =", decision),
        ("rule_id =", rule_id),
        ("id <", after_id),
    ):
        if value is not None:
            args.append(value)
            where.append(f"{test} ${len(args)}")
    args.append(limit + 1)
    return list(
        await conn.fetch(
            f"SELECT {DECISION_COLUMNS} FROM proactive_decisions "  # noqa: S608 - constants
            f"WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ${len(args)}",
            *args,
        )
    )
