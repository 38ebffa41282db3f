"""Quota enforcement: plan limits checked in the creating transaction, race-free."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Forbidden
from app.db.tenant import TenantScope
from app.quotas.plans import RESOURCES, plan_for

Counter = Callable[[AsyncSession, TenantScope], Awaitable[int]]
_COUNTERS: dict[str, Counter] = {}


def register_counter(resource: str, counter: Counter) -> None:
    """Each domain says how to count its current use (at import time)."""
    assert resource in RESOURCES, resource
    _COUNTERS[resource] = counter


@dataclass(frozen=True)
class QuotaUse:
    resource: str
    limit: int | None
    used: int


async def current_use(session: AsyncSession, scope: TenantScope, resource: str) -> int:
    counter = _COUNTERS.get(resource)
    return await counter(session, scope) if counter else 0


async def usage_report(session: AsyncSession, scope: TenantScope, plan: str) -> list[QuotaUse]:
    limits = plan_for(plan).limits
    return [QuotaUse(r, limits.get(r), await current_use(session, scope, r)) for r in RESOURCES]


async def ensure_room(
    session: AsyncSession, scope: TenantScope, plan: str, resource: str, adding: int = 1
) -> None:
    """Refuse with 403 quota-exceeded when ``adding`` more would pass the plan's limit.

    A transaction-scoped advisory lock per (tenant, resource) serialises concurrent
    creations, so two requests cannot both take the last slot.
    """
    limit = plan_for(plan).limits.get(resource)
    if limit is None:
        return
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
        {"k": f"quota:{scope.tenant_id}:{resource}"},
    )
    used = await current_use(session, scope, resource)
    if used + adding > limit:
        raise Forbidden(
            f"Your plan allows {limit} {resource.replace('_', ' ')}; {used} in use.",
            code="quota-exceeded",
            resource=resource,
            limit=limit,
            current=used,
        )
