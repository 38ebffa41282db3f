"""Every query on queues. Queues come with their required skills (selectin)."""

from __future__ import annotations

import uuid

from sqlalchemy import func, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.db import tenant_rows
from app.db.tenant import TenantScope
from app.db.tenant_rows import Lock
from app.queues.models import Queue


async def get(
    session: AsyncSession,
    scope: TenantScope,
    queue_id: uuid.UUID,
    *,
    for_update: bool = False,
    for_delete: bool = False,
) -> Queue | None:
    """One queue of the tenant. ``for_update`` locks it FOR NO KEY UPDATE (others may
    still point at it meanwhile); ``for_delete`` locks it FOR UPDATE."""
    lock: Lock | None = "update" if for_delete else "no key update" if for_update else None
    return await tenant_rows.get(
        session, Queue, scope, queue_id, lock=lock, populate_existing=lock is not None
    )


async def get_by_name(session: AsyncSession, scope: TenantScope, name: str) -> Queue | None:
    return await tenant_rows.get_by_name(session, Queue, scope, name)


async def get_many(
    session: AsyncSession, scope: TenantScope, ids: list[uuid.UUID]
) -> dict[uuid.UUID, Queue]:
    return await tenant_rows.get_many(session, Queue, scope, ids)


async def list_page(
    session: AsyncSession, scope: TenantScope, limit: int, after_id: uuid.UUID | None
) -> list[Queue]:
    """Newest first; one more row than ``limit`` tells the caller there is a next page."""
    return await tenant_rows.list_page(session, Queue, scope, limit, after_id)


async def count(session: AsyncSession, scope: TenantScope) -> int:
    stmt = select(func.count()).select_from(Queue).where(Queue.tenant_id == scope.tenant_id)
    return int((await session.execute(stmt)).scalar_one())


async def hold_existing(
    session: AsyncSession, scope: TenantScope, ids: set[uuid.UUID]
) -> set[uuid.UUID]:
    """The ids that exist, locked FOR KEY SHARE until the transaction ends.

    For references no foreign key guards (relaxation steps in JSON): a concurrent
    delete of a queue (FOR UPDATE) waits for us, or we see that it is gone.
    """
    if not ids:
        return set()
    stmt = (
        select(col(Queue.id))
        .where(Queue.tenant_id == scope.tenant_id, col(Queue.id).in_(ids))
        .with_for_update(read=True, key_share=True)
    )
    return set((await session.execute(stmt)).scalars())


async def relaxation_referrers(
    session: AsyncSession, scope: TenantScope, queue_id: uuid.UUID
) -> list[tuple[uuid.UUID, str]]:
    """(id, name) of other queues whose relaxation steps overflow to ``queue_id``."""
    probe = [{"target": {"queue_id": str(queue_id)}}]
    stmt = (
        select(col(Queue.id), col(Queue.name))
        .where(
            Queue.tenant_id == scope.tenant_id,
            Queue.id != queue_id,
            col(Queue.relaxation_steps).contains(probe),
        )
        .order_by(col(Queue.name))
    )
    return [(row[0], row[1]) for row in await session.execute(stmt)]


async def overflow_chain_reaches(
    session: AsyncSession, scope: TenantScope, start: uuid.UUID, target: uuid.UUID
) -> bool:
    """Whether following overflow_queue_id from ``start`` (itself included) reaches
    ``target``. UNION stops at any loop already stored."""
    row = await session.execute(
        text(
            """
            WITH RECURSIVE chain(id) AS (
                SELECT CAST(:start AS uuid)
                UNION
                SELECT q.overflow_queue_id FROM queues q JOIN chain c
                  ON q.tenant_id = :tenant AND q.id = c.id
                WHERE q.overflow_queue_id IS NOT NULL
            )
            SELECT 1 FROM chain WHERE id = :target LIMIT 1
            """
        ),
        {"start": start, "tenant": scope.tenant_id, "target": target},
    )
    return row.first() is not None


async def lock_overflow_graph(session: AsyncSession, scope: TenantScope) -> None:
    """Serialise changes of overflow targets within a tenant, so two concurrent edits
    cannot close a loop (A to B and B to A) that neither sees alone."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
        {"k": f"queue-overflow:{scope.tenant_id}"},
    )
