from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from app.business_hours.models import BusinessHours
from app.db import tenant_rows
from app.db.tenant import TenantScope
from app.db.tenant_rows import Lock


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
    lock: Lock | None = "update" if for_delete else "no key update" if for_update else None
    return await tenant_rows.get(
        session, BusinessHours, scope, hours_id, lock=lock, populate_existing=lock is not None
    )


async def get_by_name(session: AsyncSession, scope: TenantScope, name: str) -> BusinessHours | None:
    return await tenant_rows.get_by_name(session, BusinessHours, scope, name)


async def get_many(
    session: AsyncSession, scope: TenantScope, ids: list[uuid.UUID]
) -> dict[uuid.UUID, BusinessHours]:
    return await tenant_rows.get_many(session, BusinessHours, scope, ids)


async def list_page(
    session: AsyncSession, scope: TenantScope, limit: int, after_id: uuid.UUID | None
) -> list[BusinessHours]:
    """Newest first; one more row than ``limit`` tells the caller there is a next page."""
    return await tenant_rows.list_page(session, BusinessHours, scope, limit, after_id)
