from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import delete, func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.agents.models import Agent
from app.db.tenant import TenantScope
from app.queues.models import Queue
from app.routing_profiles.models import RoutingProfile, RoutingProfileQueue


async def get(
    session: AsyncSession, scope: TenantScope, profile_id: uuid.UUID, *, for_update: bool = False
) -> RoutingProfile | None:
    stmt = select(RoutingProfile).where(
        RoutingProfile.tenant_id == scope.tenant_id, RoutingProfile.id == profile_id
    )
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_by_name(
    session: AsyncSession, scope: TenantScope, name: str
) -> RoutingProfile | None:
    stmt = select(RoutingProfile).where(
        RoutingProfile.tenant_id == scope.tenant_id,
        func.lower(RoutingProfile.name) == name.lower(),
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_many(
    session: AsyncSession, scope: TenantScope, ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, RoutingProfile]:
    ids = list(ids)
    if not ids:
        return {}
    stmt = select(RoutingProfile).where(
        RoutingProfile.tenant_id == scope.tenant_id, col(RoutingProfile.id).in_(ids)
    )
    return {p.id: p for p in (await session.execute(stmt)).scalars()}


async def list_page(
    session: AsyncSession, scope: TenantScope, limit: int, after_id: uuid.UUID | None
) -> list[RoutingProfile]:
    stmt = select(RoutingProfile).where(RoutingProfile.tenant_id == scope.tenant_id)
    if after_id is not None:
        stmt = stmt.where(col(RoutingProfile.id) < after_id)
    stmt = stmt.order_by(col(RoutingProfile.id).desc()).limit(limit + 1)
    return list((await session.execute(stmt)).scalars())


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
