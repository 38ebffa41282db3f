"""Tenants are a platform table; these are the platform queries on it."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from app.tenants.models import Tenant


async def get(session: AsyncSession, tenant_id: uuid.UUID) -> Tenant | None:
    return await session.get(Tenant, tenant_id)


async def get_by_slug(session: AsyncSession, slug: str) -> Tenant | None:
    return (await session.execute(select(Tenant).where(Tenant.slug == slug))).scalar_one_or_none()


async def slug_taken(session: AsyncSession, slug: str) -> bool:
    return (await session.execute(select(Tenant.id).where(Tenant.slug == slug))).first() is not None
