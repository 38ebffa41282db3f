from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, or_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.db.base import utcnow
from app.db.tenant import TenantScope
from app.flows.models import Flow
from app.phone_numbers.models import NumberClaim, PhoneNumber


async def get(
    session: AsyncSession, scope: TenantScope, number_id: uuid.UUID, *, for_update: bool = False
) -> PhoneNumber | None:
    stmt = select(PhoneNumber).where(
        PhoneNumber.tenant_id == scope.tenant_id, PhoneNumber.id == number_id
    )
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_page(
    session: AsyncSession,
    scope: TenantScope,
    limit: int,
    after_id: uuid.UUID | None,
    status: str | None = None,
    country: str | None = None,
) -> list[PhoneNumber]:
    stmt = select(PhoneNumber).where(PhoneNumber.tenant_id == scope.tenant_id)
    if status:
        stmt = stmt.where(PhoneNumber.status == status)
    if country:
        stmt = stmt.where(PhoneNumber.country == country)
    if after_id is not None:
        stmt = stmt.where(col(PhoneNumber.id) < after_id)
    stmt = stmt.order_by(col(PhoneNumber.id).desc()).limit(limit + 1)
    return list((await session.execute(stmt)).scalars())


async def list_held_between(
    session: AsyncSession, scope: TenantScope, start: datetime, end: datetime
) -> list[PhoneNumber]:
    """Numbers the tenant held at some moment in [start, end)."""
    stmt = (
        select(PhoneNumber)
        .where(
            PhoneNumber.tenant_id == scope.tenant_id,
            col(PhoneNumber.claimed_at) < end,
            or_(col(PhoneNumber.released_at).is_(None), col(PhoneNumber.released_at) >= start),
        )
        .order_by(col(PhoneNumber.id))
    )
    return list((await session.execute(stmt)).scalars())


async def count_active(session: AsyncSession, scope: TenantScope) -> int:
    stmt = select(func.count()).where(
        PhoneNumber.tenant_id == scope.tenant_id, PhoneNumber.status == "active"
    )
    return int((await session.execute(stmt)).scalar_one())


async def flow_exists(session: AsyncSession, scope: TenantScope, flow_id: uuid.UUID) -> bool:
    stmt = select(Flow.id).where(Flow.tenant_id == scope.tenant_id, Flow.id == flow_id)
    return (await session.execute(stmt)).first() is not None


# --- number_claims: the platform-wide register, one row per number -----------------


async def lock_claim(session: AsyncSession, e164: str) -> NumberClaim:
    """The number's register row, created if new, locked until the transaction ends.

    Every claim and release of a number passes through this lock, whatever the
    tenant, so two tenants racing for one number are served one after the other.
    """
    await session.execute(
        insert(NumberClaim.__table__)  # type: ignore[attr-defined]
        .values(e164=e164)
        .on_conflict_do_nothing(index_elements=["e164"])
    )
    stmt = (
        select(NumberClaim)
        .where(NumberClaim.e164 == e164)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.execute(stmt)).scalar_one()


async def unavailable_among(
    session: AsyncSession, numbers: Sequence[str], now: datetime | None = None
) -> set[str]:
    """Which of ``numbers`` someone holds, or were released and are still cooling down."""
    if not numbers:
        return set()
    now = now or utcnow()
    stmt = select(NumberClaim.e164).where(
        col(NumberClaim.e164).in_(list(numbers)),
        or_(
            col(NumberClaim.tenant_id).is_not(None),
            col(NumberClaim.available_after) > now,
        ),
    )
    return set((await session.execute(stmt)).scalars())
