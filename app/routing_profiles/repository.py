from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import delete, func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.agents.models import Agent
from app.db import tenant_rows
from app.db.tenant import TenantScope
from app.queues.models import Queue
from app.routing_profiles.models import RoutingProfile, RoutingProfileQueue


async def get(
    session: AsyncSession, scope: TenantScope, profile_id: uuid.UUID, *, for_update: bool = False
) -> RoutingProfile | None:
    lock: tenant_rows.Lock | None = "update" if for_update else None
    return await tenant_rows.get(session, RoutingProfile, scope, profile_id, lock=lock)


async def get_by_name(
    session: AsyncSession, scope: TenantScope, name: str
) -> RoutingProfile | None:
    return await tenant_rows.get_by_name(session, RoutingProfile, scope, name)


async def get_many(
    session: AsyncSession, scope: TenantScope, ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, RoutingProfile]:
    return await tenant_rows.get_many(session, RoutingProfile, scope, ids)


async def list_page(
    session: AsyncSession, scope: TenantScope, limit: int, after_id: uuid.UUID | None
) -> list[RoutingProfile]:
    return await tenant_rows.list_page(session, RoutingProfile, scope, limit, after_id)


async def queues_of(
    session: AsyncSession, scope: TenantScope, profile_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, list[RoutingProfileQueue]]:
    """The queues each profile serves, in serving order (priority, then delay)."""
    ids = list(profile_ids)
    out: dict[uuid.UUID, list[RoutingProfileQueue]] = {i: [] for i in ids}
    if not ids:
        return out
    stmt = (
        select(RoutingProfileQueue)
        .where(
            RoutingProfileQueue.tenant_id == scope.tenant_id,
            col(RoutingProfileQueue.routing_profile_id).in_(ids),
        )
        .order_by(
            col(RoutingProfileQueue.priority),
            col(RoutingProfileQueue.delay_seconds),
            col(RoutingProfileQueue.queue_id),
        )
    )
    for row in (await session.execute(stmt)).scalars():
        out[row.routing_profile_id].append(row)
    return out


async def replace_queues(
    session: AsyncSession,
    scope: TenantScope,
    profile_id: uuid.UUID,
    rows: list[RoutingProfileQueue],
) -> None:
    await session.execute(
        delete(RoutingProfileQueue).where(
            col(RoutingProfileQueue.tenant_id) == scope.tenant_id,
            col(RoutingProfileQueue.routing_profile_id) == profile_id,
        )
    )
    session.add_all(rows)
    await session.flush()


async def existing_queue_ids(
    session: AsyncSession, scope: TenantScope, ids: Iterable[uuid.UUID]
) -> set[uuid.UUID]:
    """Which of ``ids`` are queues of this tenant (read from the queues table directly)."""
    ids = list(ids)
    if not ids:
        return set()
    stmt = select(Queue.id).where(Queue.tenant_id == scope.tenant_id, col(Queue.id).in_(ids))
    return set((await session.execute(stmt)).scalars())


async def agents_using(session: AsyncSession, scope: TenantScope, profile_id: uuid.UUID) -> int:
    stmt = select(func.count()).where(
        Agent.tenant_id == scope.tenant_id, Agent.routing_profile_id == profile_id
    )
    return int((await session.execute(stmt)).scalar_one())
