from __future__ import annotations

import uuid

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.business_hours.models import BusinessHours
from app.db.tenant import TenantScope


async def get(
    session: AsyncSession,
    scope: TenantScope,
    hours_id: uuid.UUID,
    *,
    for_update: bool = False,
    for_delete: bool = False,
) -> BusinessHours | None:
    """One tenant's business hours. ``for_update`` locks the row FOR NO KEY UPDATE (a
    queue may still reference it meanwhile); ``for_delete`` locks it FOR UPDATE."""
    stmt = select(BusinessHours).where(
        BusinessHours.tenant_id == scope.tenant_id, BusinessHours.id == hours_id
    )
    if for_delete:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    elif for_update:
        stmt = stmt.with_for_update(key_share=True).execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_by_name(session: AsyncSession, scope: TenantScope, name: str) -> BusinessHours | None:
    stmt = select(BusinessHours).where(
        BusinessHours.tenant_id == scope.tenant_id, func.lower(BusinessHours.name) == name.lower()
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_many(
    session: AsyncSession, scope: TenantScope, ids: list[uuid.UUID]
) -> dict[uuid.UUID, BusinessHours]:
    if not ids:
        return {}
    stmt = select(BusinessHours).where(
        BusinessHours.tenant_id == scope.tenant_id, col(BusinessHours.id).in_(ids)
    )
    return {h.id: h for h in (await session.execute(stmt)).scalars()}


async def list_page(
    session: AsyncSession, scope: TenantScope, limit: int, after_id: uuid.UUID | None
) -> list[BusinessHours]:
    """Newest first; one more row than ``limit`` tells the caller there is a next page."""
    stmt = select(BusinessHours).where(BusinessHours.tenant_id == scope.tenant_id)
    if after_id is not None:
        stmt = stmt.where(col(BusinessHours.id) < after_id)
    stmt = stmt.order_by(col(BusinessHours.id).desc()).limit(limit + 1)
    return list((await session.execute(stmt)).scalars())
