"""Phone-number days in the usage ledger: one event per number per day it is held.

The claim records its first day in the claim's own transaction; a daily job calls
``record_number_days`` for each day (after it ends, so that numbers released during it
count too). Each event's idempotency key names the
number and the day, so running the job twice (or on the claim's day) records nothing new.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.db.tenant import TenantScope
from app.phone_numbers import repository
from app.phone_numbers.models import PhoneNumber
from app.usage.service import Meter, record

_DAY = timedelta(days=1)


def day_key(number: PhoneNumber, on_date: date) -> str:
    return f"phone-number-day:{number.id}:{on_date.isoformat()}"


async def record_day(
    session: AsyncSession, scope: TenantScope, number: PhoneNumber, on_date: date
) -> bool:
    """Record ``number`` as held on ``on_date``; False if that day was recorded already."""
    occurred = max(number.claimed_at, datetime.combine(on_date, time.min, tzinfo=UTC))
    recorded = await record(
        session,
        scope,
        meter=Meter.phone_number_days,
        quantity=1,
        occurred_at=occurred,
        idempotency_key=day_key(number, on_date),
        attributes={
            "phone_number_id": str(number.id),
            "number": number.e164,
            "carrier": number.carrier,
            "country": number.country,
            "type": number.number_type,
        },
    )
    return recorded.created


async def record_number_days(session: AsyncSession, scope: TenantScope, on_date: date) -> int:
    """Record one day for every number the tenant held at any time on ``on_date`` (UTC:
    a number released that day still counts it); returns how many events were new."""
    start = datetime.combine(on_date, time.min, tzinfo=UTC)
    created = 0
    for number in await repository.list_held_between(session, scope, start, start + _DAY):
        created += await record_day(session, scope, number, on_date)
    return created
