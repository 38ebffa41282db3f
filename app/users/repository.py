from __future__ import annotations

import uuid

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from app.db.tenant import TenantScope
from app.users.models import LoginEmail, User


async def get(session: AsyncSession, scope: TenantScope, user_id: uuid.UUID) -> User | None:
    stmt = select(User).where(User.tenant_id == scope.tenant_id, User.id == user_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_by_email(session: AsyncSession, scope: TenantScope, email: str) -> User | None:
    stmt = select(User).where(
        User.tenant_id == scope.tenant_id, func.lower(User.email) == email.lower()
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def find_login(session: AsyncSession, email: str) -> LoginEmail | None:
    """Platform lookup: which tenant and user an email logs in to."""
    return await session.get(LoginEmail, email.lower())
