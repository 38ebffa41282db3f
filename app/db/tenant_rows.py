"""The queries every tenant-owned table answers alike: one row by id or by name, many
by id, and a page newest first. Domain repositories wrap these with their own model
and keep their own signatures; what is particular to a table stays there."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Literal, Protocol, TypeVar

from sqlalchemy import ColumnElement, func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.db.tenant import TenantScope


class TenantRow(Protocol):
    tenant_id: uuid.UUID
    id: uuid.UUID


class NamedTenantRow(TenantRow, Protocol):
    name: str


M = TypeVar("M", bound=TenantRow)
N = TypeVar("N", bound=NamedTenantRow)

# FOR UPDATE, or FOR NO KEY UPDATE (rows that others may keep pointing at meanwhile).
Lock = Literal["update", "no key update"]


async def get(
    session: AsyncSession,
    model: type[M],
    scope: TenantScope,
    row_id: uuid.UUID,
    *,
    lock: Lock | None = None,
    populate_existing: bool = False,
) -> M | None:
    """One row of the tenant, optionally locked until the transaction ends;
    ``populate_existing`` refreshes an instance the session already holds."""
    stmt = select(model).where(model.tenant_id == scope.tenant_id, model.id == row_id)
    if lock is not None:
        stmt = stmt.with_for_update(key_share=lock == "no key update")
    if populate_existing:
        stmt = stmt.execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_by_name(
    session: AsyncSession, model: type[N], scope: TenantScope, name: str
) -> N | None:
    """The tenant's row of this name, compared case-insensitively (as its unique index)."""
    stmt = select(model).where(
        model.tenant_id == scope.tenant_id, func.lower(model.name) == name.lower()
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_many(
    session: AsyncSession, model: type[M], scope: TenantScope, ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, M]:
    """The tenant's rows among ``ids``, by id (missing ones left out)."""
    ids = list(ids)
    if not ids:
        return {}
    stmt = select(model).where(model.tenant_id == scope.tenant_id, col(model.id).in_(ids))
    return {row.id: row for row in (await session.execute(stmt)).scalars()}


async def list_page(
    session: AsyncSession,
    model: type[M],
    scope: TenantScope,
    limit: int,
    after_id: uuid.UUID | None,
    *where: ColumnElement[bool] | bool,
) -> list[M]:
    """The tenant's rows matching ``where``, newest first (ids are time-ordered), after
    ``after_id``; one row more than ``limit`` tells the caller there is a next page."""
    stmt = select(model).where(model.tenant_id == scope.tenant_id, *where)
    if after_id is not None:
        stmt = stmt.where(col(model.id) < after_id)
    stmt = stmt.order_by(col(model.id).desc()).limit(limit + 1)
    return list((await session.execute(stmt)).scalars())
