from __future__ import annotations

import uuid

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.business_hours.models import BusinessHours
from app.db.tenant import TenantScope
from app.flows.models import Flow, FlowVersion
from app.flows.validation import KnownIds
from app.queues.models import Queue
from app.skills.models import Skill


async def get(
    session: AsyncSession, scope: TenantScope, flow_id: uuid.UUID, *, for_update: bool = False
) -> Flow | None:
    stmt = select(Flow).where(Flow.tenant_id == scope.tenant_id, Flow.id == flow_id)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_by_name(session: AsyncSession, scope: TenantScope, name: str) -> Flow | None:
    stmt = select(Flow).where(
        Flow.tenant_id == scope.tenant_id, func.lower(Flow.name) == name.lower()
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_page(
    session: AsyncSession, scope: TenantScope, limit: int, after_id: uuid.UUID | None
) -> list[Flow]:
    stmt = select(Flow).where(Flow.tenant_id == scope.tenant_id)
    if after_id is not None:
        stmt = stmt.where(col(Flow.id) < after_id)
    stmt = stmt.order_by(col(Flow.id).desc()).limit(limit + 1)
    return list((await session.execute(stmt)).scalars())


async def latest_version(
    session: AsyncSession, scope: TenantScope, flow_id: uuid.UUID
) -> FlowVersion | None:
    stmt = (
        select(FlowVersion)
        .where(FlowVersion.tenant_id == scope.tenant_id, FlowVersion.flow_id == flow_id)
        .order_by(col(FlowVersion.number).desc())
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_version(
    session: AsyncSession, scope: TenantScope, flow_id: uuid.UUID, number: int
) -> FlowVersion | None:
    stmt = select(FlowVersion).where(
        FlowVersion.tenant_id == scope.tenant_id,
        FlowVersion.flow_id == flow_id,
        FlowVersion.number == number,
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_versions(
    session: AsyncSession,
    scope: TenantScope,
    flow_id: uuid.UUID,
    limit: int,
    before: int | None,
) -> list[FlowVersion]:
    """Newest first; ``limit + 1`` rows so the caller knows whether more follow."""
    stmt = select(FlowVersion).where(
        FlowVersion.tenant_id == scope.tenant_id, FlowVersion.flow_id == flow_id
    )
    if before is not None:
        stmt = stmt.where(col(FlowVersion.number) < before)
    stmt = stmt.order_by(col(FlowVersion.number).desc()).limit(limit + 1)
    return list((await session.execute(stmt)).scalars())


async def existing(session: AsyncSession, scope: TenantScope, named: KnownIds) -> KnownIds:
    """Which of the named queue, business-hours and skill ids exist for this tenant."""

    async def present(
        model: type[Queue] | type[BusinessHours] | type[Skill], ids: frozenset[uuid.UUID]
    ) -> frozenset[uuid.UUID]:
        if not ids:
            return frozenset()
        stmt = select(model.id).where(model.tenant_id == scope.tenant_id, col(model.id).in_(ids))
        return frozenset((await session.execute(stmt)).scalars())

    return KnownIds(
        queues=await present(Queue, named.queues),
        business_hours=await present(BusinessHours, named.business_hours),
        skills=await present(Skill, named.skills),
    )
