from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, or_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.channels.models import Channel, ChannelNumber
from app.db import tenant_rows
from app.db.base import utcnow
from app.db.tenant import TenantScope
from app.flows.models import Flow
from app.phone_numbers.models import NumberClaim, PhoneNumber


async def get(
    session: AsyncSession, scope: TenantScope, number_id: uuid.UUID, *, for_update: bool = False
) -> PhoneNumber | None:
    lock: tenant_rows.Lock | None = "update" if for_update else None
    return await tenant_rows.get(session, PhoneNumber, scope, number_id, lock=lock)


async def list_page(
    session: AsyncSession,
    scope: TenantScope,
    limit: int,
    after_id: uuid.UUID | None,
    status: str | None = None,
    country: str | None = None,
) -> list[PhoneNumber]:
    where = [PhoneNumber.status == status] if status else []
    where += [PhoneNumber.country == country] if country else []
    return await tenant_rows.list_page(session, PhoneNumber, scope, limit, after_id, *where)


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


async def channels_answering(
    session: AsyncSession, scope: TenantScope, number_id: uuid.UUID
) -> list[tuple[uuid.UUID, str, str]]:
    """(id, name, type) of the channels the number is attached to. A channel attaching
    a number share-locks it (app/channels/repository.py ``active_numbers``), so under
    the number's FOR UPDATE lock this list is complete."""
    stmt = (
        select(col(Channel.id), col(Channel.name), col(Channel.type))
        .join(
            ChannelNumber,
            (col(ChannelNumber.tenant_id) == col(Channel.tenant_id))
            & (col(ChannelNumber.channel_id) == col(Channel.id)),
        )
        .where(Channel.tenant_id == scope.tenant_id, ChannelNumber.phone_number_id == number_id)
        .order_by(func.lower(col(Channel.name)))
    )
    return [(row[0], row[1], row[2]) for row in await session.execute(stmt)]


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
