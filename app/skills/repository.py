from __future__ import annotations

import uuid

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.db.tenant import TenantScope
from app.skills.models import Skill


async def get(
    session: AsyncSession, scope: TenantScope, skill_id: uuid.UUID, *, for_update: bool = False
) -> Skill | None:
    stmt = select(Skill).where(Skill.tenant_id == scope.tenant_id, Skill.id == skill_id)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_by_name(session: AsyncSession, scope: TenantScope, name: str) -> Skill | None:
    stmt = select(Skill).where(
        Skill.tenant_id == scope.tenant_id, func.lower(Skill.name) == name.lower()
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_many(
    session: AsyncSession, scope: TenantScope, ids: list[uuid.UUID]
) -> dict[uuid.UUID, Skill]:
    if not ids:
        return {}
    stmt = select(Skill).where(Skill.tenant_id == scope.tenant_id, col(Skill.id).in_(ids))
    return {s.id: s for s in (await session.execute(stmt)).scalars()}


async def list_page(
    session: AsyncSession,
    scope: TenantScope,
    limit: int,
    after_id: uuid.UUID | None,
    kind: str | None = None,
) -> list[Skill]:
    stmt = select(Skill).where(Skill.tenant_id == scope.tenant_id)
    if kind:
        stmt = stmt.where(Skill.kind == kind)
    if after_id is not None:
        stmt = stmt.where(col(Skill.id) < after_id)
    stmt = stmt.order_by(col(Skill.id).desc()).limit(limit + 1)
    return list((await session.execute(stmt)).scalars())
