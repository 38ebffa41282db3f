"""Business hours: a weekly schedule and dated exceptions in an IANA time zone.

Names are unique per tenant (case-insensitive). Hours that a queue uses (the queue's
foreign key is RESTRICT) or a contact flow checks (its draft or published version)
cannot be deleted.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.business_hours import repository
from app.business_hours.models import BusinessHours
from app.business_hours.schedule import Status, schedule_from_json, status_at
from app.business_hours.schemas import (
    BusinessHoursCreate,
    BusinessHoursRead,
    BusinessHoursUpdate,
    DatedHours,
    WeeklyHours,
)
from app.core.concurrency import IfMatch
from app.core.errors import Conflict, InvalidInput, NotFound
from app.db.base import utcnow
from app.db.integrity import guarded
from app.db.tenant import TenantScope
from app.flows import repository as flows_repo
from app.queues.models import Queue

_NAME_INDEX = "ix_business_hours_tenant_id_name"


def _name_taken(name: str) -> Conflict:
    return Conflict(
        f"Business hours named '{name}' exist.",
        code="business-hours-name-taken",
        field="body.name",
    )


def _weekly_json(weekly: WeeklyHours) -> dict[str, Any]:
    return weekly.model_dump(mode="json")


def _exceptions_json(exceptions: list[DatedHours]) -> list[dict[str, Any]]:
    return [e.model_dump(mode="json") for e in exceptions]


def to_read(hours: BusinessHours) -> BusinessHoursRead:
    return BusinessHoursRead(
        id=hours.id,
        name=hours.name,
        timezone=hours.timezone,
        weekly=WeeklyHours.model_validate(hours.weekly),
        exceptions=[DatedHours.model_validate(e) for e in hours.exceptions],
        version=hours.version,
        created_at=hours.created_at,
        updated_at=hours.updated_at,
    )


async def get(
    session: AsyncSession,
    scope: TenantScope,
    hours_id: uuid.UUID,
    *,
    for_update: bool = False,
    for_delete: bool = False,
) -> BusinessHours:
    hours = await repository.get(
        session, scope, hours_id, for_update=for_update, for_delete=for_delete
    )
    if hours is None:
        raise NotFound("No such business hours.", code="business-hours-not-found")
    return hours


async def create(
    session: AsyncSession,
    scope: TenantScope,
    data: BusinessHoursCreate,
    plan: str | None = None,
) -> BusinessHours:
    """Create business hours. ``plan`` is accepted for a signature uniform with other
    provisioning services; business hours have no plan limit."""
    if await repository.get_by_name(session, scope, data.name):
        raise _name_taken(data.name)
    hours = BusinessHours(
        tenant_id=scope.tenant_id,
        name=data.name,
        timezone=data.timezone,
        weekly=_weekly_json(data.weekly),
        exceptions=_exceptions_json(data.exceptions),
    )

    async def insert() -> BusinessHours:
        session.add(hours)
        await session.flush()
        return hours

    return await guarded(session, insert, {_NAME_INDEX: _name_taken(data.name)})


async def update(
    session: AsyncSession,
    scope: TenantScope,
    hours_id: uuid.UUID,
    data: BusinessHoursUpdate,
    if_match: IfMatch,
) -> BusinessHours:
    """Replace the fields given; a change that changes nothing keeps the version."""
    hours = await get(session, scope, hours_id, for_update=True)
    if_match.check(hours.version)
    given = data.model_fields_set
    changes: dict[str, Any] = {}
    if "name" in given and data.name is not None:
        changes["name"] = data.name
    if "timezone" in given and data.timezone is not None:
        changes["timezone"] = data.timezone
    if "weekly" in given and data.weekly is not None:
        changes["weekly"] = _weekly_json(data.weekly)
    if "exceptions" in given and data.exceptions is not None:
        changes["exceptions"] = _exceptions_json(data.exceptions)
    new_name = changes.get("name")
    if new_name and new_name.lower() != hours.name.lower():
        other = await repository.get_by_name(session, scope, new_name)
        if other is not None and other.id != hours.id:
            raise _name_taken(new_name)
    if not any(getattr(hours, k) != v for k, v in changes.items()):
        return hours
    for k, v in changes.items():
        setattr(hours, k, v)
    hours.version += 1
    hours.updated_at = utcnow()

    async def flush() -> BusinessHours:
        await session.flush()
        return hours

    return await guarded(session, flush, {_NAME_INDEX: _name_taken(new_name or "")})


async def delete(
    session: AsyncSession, scope: TenantScope, hours_id: uuid.UUID, if_match: IfMatch
) -> BusinessHours:
    hours = await get(session, scope, hours_id, for_delete=True)
    if_match.check(hours.version)
    # Locked FOR UPDATE: queues that pointed here have committed; new ones wait.
    users = await session.execute(
        select(col(Queue.id), col(Queue.name))
        .where(Queue.tenant_id == scope.tenant_id, Queue.business_hours_id == hours.id)
        .order_by(col(Queue.name))
    )
    used_by = [{"type": "queue", "id": str(i), "name": n} for i, n in users]
    # Flows name hours inside their graphs, without a foreign key.
    flows = await flows_repo.flows_referencing(session, scope, "business_hours", hours.id)
    used_by += [
        {"type": "flow", "id": str(f.flow_id), "name": f.name, "as": f.where()} for f in flows
    ]
    in_use = Conflict(
        "Queues or contact flows use these business hours; point them elsewhere first "
        "(a flow: change its draft and publish it).",
        code="business-hours-in-use",
        used_by=used_by or None,
    )
    if used_by:
        raise in_use

    async def remove() -> BusinessHours:
        await session.delete(hours)
        await session.flush()
        return hours

    return await guarded(session, remove, {"fk_queues_business_hours": in_use}, default=in_use)


def status_of(hours: BusinessHours, at: datetime) -> Status:
    """Open or closed at ``at``, and the next change."""
    schedule = schedule_from_json(hours.timezone, hours.weekly, hours.exceptions)
    try:
        return status_at(schedule, at)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="query.at") from None
