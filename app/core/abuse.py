"""Abuse limits: fixed-window counters in ``abuse_counters`` (a platform table, so every
API and SMTP replica counts together), per client address or per visitor, per action.

Each hit is counted in its own short transaction on a pool of its own, not the
request's: the counter row is locked only for the increment (a busy address does not
serialise its requests), a request that fails later still counts, and a request holding
its connection never waits on the pool it holds. Past the limit: 429 ``rate-limited``
with ``Retry-After`` (seconds to the next window). Windows older than the longest one
are deleted now and then, a bounded batch at a time.
"""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.errors import TooManyRequests
from app.db.base import utcnow
from app.routing.connection import raw

MINUTE = 60
HOUR = 3600
SWEEP_PROBABILITY = 0.02
SWEEP_BATCH = 1000
KEEP = timedelta(seconds=2 * HOUR)  # longer than the longest window


@dataclass(frozen=True)
class Limit:
    action: str
    limit: int
    window_seconds: int


def address_bucket(address: str, limit: Limit) -> str:
    return f"address:{address[:64]}:{limit.action}"


def visitor_bucket(tenant_id: uuid.UUID, visitor_id: str, limit: Limit) -> str:
    return f"visitor:{tenant_id}:{visitor_id}:{limit.action}"


def _window_start(now: datetime, seconds: int) -> datetime:
    epoch = now.timestamp()
    return datetime.fromtimestamp(epoch - epoch % seconds, UTC)


async def hit(factory: async_sessionmaker[AsyncSession], bucket: str, limit: Limit) -> None:
    """Count one request in ``bucket``; 429 past ``limit.limit`` in the current window."""
    now = utcnow()
    start = _window_start(now, limit.window_seconds)
    async with factory() as session, session.begin():
        conn = await raw(session)
        count: int = await conn.fetchval(
            "INSERT INTO abuse_counters (bucket, window_start, count) VALUES ($1, $2, 1) "
            "ON CONFLICT (bucket, window_start) DO UPDATE SET count = abuse_counters.count + 1 "
            "RETURNING count",
            bucket,
            start,
        )
        if count == 1:  # a new window: this bucket's older ones are done with
            await conn.execute(
                "DELETE FROM abuse_counters WHERE bucket = $1 AND window_start < $2",
                bucket,
                start,
            )
        if random.random() < SWEEP_PROBABILITY:  # noqa: S311 - not security relevant
            await conn.execute(
                "DELETE FROM abuse_counters WHERE ctid = ANY(ARRAY(SELECT ctid "
                "FROM abuse_counters WHERE window_start < $1 LIMIT $2))",
                now - KEEP,
                SWEEP_BATCH,
            )
    if count > limit.limit:
        left = (start + timedelta(seconds=limit.window_seconds) - now).total_seconds()
        retry_after = max(1, math.ceil(left))
        raise TooManyRequests(
            f"Too many {limit.action.replace('_', ' ')} requests; try again in {retry_after} s.",
            code="rate-limited",
            headers={"Retry-After": str(retry_after)},
            retry_after=retry_after,
        )
