from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from app.api_keys.models import ApiKey
from app.db.tenant import TenantScope


async def get(session: AsyncSession, scope: TenantScope, key_id: uuid.UUID) -> ApiKey | None:
    stmt = select(ApiKey).where(ApiKey.tenant_id == scope.tenant_id, ApiKey.id == key_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_page(
    session: AsyncSession, scope: TenantScope, limit: int, after_id: uuid.UUID | None
) -> list[ApiKey]:
    stmt = select(ApiKey).where(ApiKey.tenant_id == scope.tenant_id)
    if after_id is not None:
        stmt = stmt.where(ApiKey.id < after_id)
    stmt = stmt.order_by(ApiKey.id.desc()).limit(limit + 1)  # type: ignore[attr-defined]
    return list((await session.execute(stmt)).scalars())


async def touch(session: AsyncSession, scope: TenantScope, key_id: uuid.UUID, at: datetime) -> None:
    await session.execute(
        update(ApiKey)
        .where(ApiKey.tenant_id == scope.tenant_id, ApiKey.id == key_id)  # type: ignore[arg-type]
        .values(last_used_at=at)
    )
