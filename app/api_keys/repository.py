from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from app.api_keys.models import ApiKey
from app.db import tenant_rows
from app.db.tenant import TenantScope


async def get(session: AsyncSession, scope: TenantScope, key_id: uuid.UUID) -> ApiKey | None:
    return await tenant_rows.get(session, ApiKey, scope, key_id)


async def list_page(
    session: AsyncSession, scope: TenantScope, limit: int, after_id: uuid.UUID | None
) -> list[ApiKey]:
    return await tenant_rows.list_page(session, ApiKey, scope, limit, after_id)


async def touch(session: AsyncSession, scope: TenantScope, key_id: uuid.UUID, at: datetime) -> None:
    await session.execute(
        update(ApiKey)
        .where(ApiKey.tenant_id == scope.tenant_id, ApiKey.id == key_id)  # type: ignore[arg-type]
        .values(last_used_at=at)
    )
