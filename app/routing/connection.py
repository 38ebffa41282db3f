"""The asyncpg connection under a request's SQLAlchemy session (same transaction).

The routing SQL is written for asyncpg (the workers use it directly); the API runs the
same statements inside its request transaction, where ``app.tenant_id`` is bound.
"""

from __future__ import annotations

from typing import cast

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession


async def raw(session: AsyncSession) -> asyncpg.Connection:
    conn = await session.connection()
    fairy = await conn.get_raw_connection()
    return cast(asyncpg.Connection, fairy.driver_connection)
