"""Routing profiles: an agent's capacity budget across channels and the queues served.

Names are unique per tenant (case-insensitive). Every channel cost fits the budget (a
channel that costs more than the whole budget could never be offered). Queues served
must be this tenant's, each once. A profile that agents use cannot be deleted.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.concurrency import IfMatch
from app.core.errors import Conflict, InvalidInput, NotFound, SwitchboardError
from app.db.base import utcnow
from app.db.integrity import guarded
from app.db.tenant import TenantScope
from app.routing_profiles import repository
from app.routing_profiles.models import DEFAULT_CHANNEL_COSTS, RoutingProfile, RoutingProfileQueue
from app.routing_profiles.schemas import (
    QueueAssignment,
    QueueAssignmentRead,
    RoutingProfileCreate,
    RoutingProfileRead,
    RoutingProfileUpdate,
)

NAME_INDEX = "ix_routing_profiles_tenant_id_name"


@dataclass
class RoutingProfileView:
    """A profile with the queues it serves (what the API shows)."""

    profile: RoutingProfile
    queues: list[RoutingProfileQueue] = field(default_factory=list)


def _name_taken(name: str) -> Conflict:
    return Conflict(
        f"A routing profile named '{name}' exists.",
        code="routing-profile-name-taken",
        field="body.name",
    )


def _unknown_queue(field_path: str) -> InvalidInput:
    return InvalidInput(
        f"{field_path}: no such queue in this tenant", code="unknown-queue", field=field_path
    )


def to_read(view: RoutingProfileView) -> RoutingProfileRead:
    p = view.profile
    return RoutingProfileRead(
        id=p.id,
        name=p.name,
        capacity_points=p.capacity_points,
        channel_costs=dict(p.channel_costs),
        queues=[
            QueueAssignmentRead(
                queue_id=q.queue_id, priority=q.priority, delay_seconds=q.delay_seconds
            )
            for q in view.queues
        ],
        version=p.version,
        created_at=p.created_at,
        updated_at=p.updated_at,
    )


async def get(
    session: AsyncSession, scope: TenantScope, profile_id: uuid.UUID, *, for_update: bool = False
) -> RoutingProfile:
    profile = await repository.get(session, scope, profile_id, for_update=for_update)
    if profile is None:
        raise NotFound("No such routing profile.", code="routing-profile-not-found")
    return profile


async def load(
    session: AsyncSession, scope: TenantScope, profile_id: uuid.UUID
) -> RoutingProfileView:
    profile = await get(session, scope, profile_id)
    queues = await repository.queues_of(session, scope, [profile.id])
    return RoutingProfileView(profile, queues[profile.id])


async def load_many(
    session: AsyncSession, scope: TenantScope, profiles: Sequence[RoutingProfile]
) -> list[RoutingProfileView]:
    queues = await repository.queues_of(session, scope, [p.id for p in profiles])
    return [RoutingProfileView(p, queues[p.id]) for p in profiles]


def _check_costs(capacity: int, costs: dict[str, int], *, costs_sent: bool) -> None:
    """Each cost must fit the budget. Name the field the caller sent: the cost when the
    costs were sent, else the budget (that they lowered under a stored or default cost)."""
    if not costs:
        raise InvalidInput(
            "channel_costs must name at least one channel", field="body.channel_costs"
        )
    for channel, cost in costs.items():
        if cost > capacity:
            if costs_sent:
                raise InvalidInput(
                    f"body.channel_costs.{channel}: {cost} exceeds capacity_points ({capacity}); "
                    "a contact of this channel could never be offered",
                    code="cost-exceeds-capacity",
                    field=f"body.channel_costs.{channel}",
                )
            raise InvalidInput(
                f"body.capacity_points: {capacity} is below the cost of {channel} ({cost}); "
                "lower that cost in channel_costs, or leave the channel out",
                code="cost-exceeds-capacity",
                field="body.capacity_points",
            )


async def _check_queues(
    session: AsyncSession, scope: TenantScope, queues: list[QueueAssignment]
) -> None:
    seen: set[uuid.UUID] = set()
    for i, q in enumerate(queues):
        if q.queue_id in seen:
            raise InvalidInput(
                f"body.queues.{i}.queue_id: the queue is listed twice",
                code="duplicate-queue",
                field=f"body.queues.{i}.queue_id",
            )
        seen.add(q.queue_id)
    known = await repository.existing_queue_ids(session, scope, seen)
    for i, q in enumerate(queues):
        if q.queue_id not in known:
            raise _unknown_queue(f"body.queues.{i}.queue_id")


def _rows(
    scope: TenantScope, profile_id: uuid.UUID, queues: list[QueueAssignment]
) -> list[RoutingProfileQueue]:
    return [
        RoutingProfileQueue(
            tenant_id=scope.tenant_id,
            routing_profile_id=profile_id,
            queue_id=q.queue_id,
            priority=q.priority,
            delay_seconds=q.delay_seconds,
        )
        for q in queues
    ]


def _constraint_errors(name: str) -> dict[str, SwitchboardError]:
    # A queue deleted between our check and the insert trips the foreign key.
    return {
        NAME_INDEX: _name_taken(name),
        "fk_routing_profile_queues_queue": _unknown_queue("body.queues"),
    }


async def create(
    session: AsyncSession, scope: TenantScope, data: RoutingProfileCreate
) -> RoutingProfileView:
    """Create a profile with its queues. Raises 409 on a taken name, 422 on bad costs or
    queues (naming the field)."""
    costs_sent = data.channel_costs is not None
    costs = data.channel_costs.as_dict() if data.channel_costs else dict(DEFAULT_CHANNEL_COSTS)
    _check_costs(data.capacity_points, costs, costs_sent=costs_sent)
    if await repository.get_by_name(session, scope, data.name):
        raise _name_taken(data.name)
    await _check_queues(session, scope, data.queues)
    profile = RoutingProfile(
        tenant_id=scope.tenant_id,
        name=data.name,
        capacity_points=data.capacity_points,
        channel_costs=costs,
    )

    async def insert() -> RoutingProfile:
        session.add(profile)
        await session.flush()
        await repository.replace_queues(
            session, scope, profile.id, _rows(scope, profile.id, data.queues)
        )
        return profile

    await guarded(session, insert, _constraint_errors(data.name))
    return await load(session, scope, profile.id)


def _queue_key(
    rows: Sequence[RoutingProfileQueue | QueueAssignment],
) -> set[tuple[uuid.UUID, int, int]]:
    return {(r.queue_id, r.priority, r.delay_seconds) for r in rows}


async def update(
    session: AsyncSession,
    scope: TenantScope,
    profile_id: uuid.UUID,
    data: RoutingProfileUpdate,
    if_match: IfMatch,
) -> RoutingProfileView:
    """Change a profile; channel_costs and queues, when sent, replace what was there.
    A change that changes nothing keeps the version (and the ETag)."""
    profile = await get(session, scope, profile_id, for_update=True)
    if_match.check(profile.version)
    sent = data.model_fields_set
    for name in ("name", "capacity_points", "channel_costs", "queues"):
        if name in sent and getattr(data, name) is None:
            raise InvalidInput(f"body.{name}: must not be null", field=f"body.{name}")
    capacity = data.capacity_points if data.capacity_points is not None else profile.capacity_points
    costs = (
        data.channel_costs.as_dict()
        if data.channel_costs is not None
        else dict(profile.channel_costs)
    )
    _check_costs(capacity, costs, costs_sent=data.channel_costs is not None)
    if data.name is not None and data.name.lower() != profile.name.lower():
        other = await repository.get_by_name(session, scope, data.name)
        if other is not None and other.id != profile.id:
            raise _name_taken(data.name)
    current_queues = (await repository.queues_of(session, scope, [profile.id]))[profile.id]
    queues_changed = data.queues is not None and _queue_key(data.queues) != _queue_key(
        current_queues
    )
    if data.queues is not None:
        await _check_queues(session, scope, data.queues)

    changes = {
        k: v
        for k, v in (
            ("name", data.name),
            ("capacity_points", data.capacity_points),
            ("channel_costs", costs if data.channel_costs is not None else None),
        )
        if v is not None and getattr(profile, k) != v
    }
    if not changes and not queues_changed:
        return RoutingProfileView(profile, current_queues)
    new_queues = data.queues

    async def apply() -> RoutingProfile:
        for k, v in changes.items():
            setattr(profile, k, v)
        profile.version += 1
        profile.updated_at = utcnow()
        await session.flush()
        if queues_changed and new_queues is not None:
            await repository.replace_queues(
                session, scope, profile.id, _rows(scope, profile.id, new_queues)
            )
        return profile

    await guarded(session, apply, _constraint_errors(data.name or ""))
    return await load(session, scope, profile.id)


async def delete(
    session: AsyncSession, scope: TenantScope, profile_id: uuid.UUID, if_match: IfMatch
) -> RoutingProfile:
    """Delete a profile no agent uses (409 routing-profile-in-use otherwise)."""
    profile = await get(session, scope, profile_id, for_update=True)
    if_match.check(profile.version)
    users = await repository.agents_using(session, scope, profile.id)
    in_use = Conflict(
        f"{users or 'Some'} agent(s) use this routing profile; move them to another first.",
        code="routing-profile-in-use",
        agents=users or None,
    )
    if users:
        raise in_use

    async def remove() -> RoutingProfile:
        await session.delete(profile)
        await session.flush()
        return profile

    return await guarded(session, remove, {"fk_agents_routing_profile": in_use})
