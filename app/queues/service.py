"""Queues: where contacts wait, and the routing policy that finds them an agent.

Every reference a queue holds (business hours, skills, overflow queues, relaxation
targets) must name a resource of the same tenant; an unknown one is bad input (422 on
the field), never a 404. Deleting a queue that something still points at (channels
included) is refused (409 ``queue-in-use``), and so is dropping a routing channel that a
channel routing to the queue needs. Creation is bounded by the plan's ``queues`` quota.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.business_hours import repository as hours_repo
from app.channels import repository as channels_repo
from app.channels.validation import ROUTING_CHANNEL
from app.core.concurrency import IfMatch
from app.core.errors import Conflict, InvalidInput, NotFound, SwitchboardError
from app.db.base import utcnow
from app.db.integrity import guarded
from app.db.tenant import TenantScope
from app.flows import repository as flows_repo
from app.queues import repository
from app.queues.models import Queue, QueueSkill
from app.queues.schemas import (
    QueueCreate,
    QueueRead,
    QueueUpdate,
    RelaxationStep,
    RequiredSkill,
    policy_problem,
)
from app.quotas.service import ensure_room, register_counter
from app.routing_profiles.models import RoutingProfile, RoutingProfileQueue
from app.skills import repository as skills_repo

register_counter("queues", repository.count)

_NAME_INDEX = "ix_queues_tenant_id_name"
# Columns a create or update sets directly (lists and references included).
_COLUMNS = (
    "name",
    "description",
    "channels",
    "business_hours_id",
    "service_level_percent",
    "service_level_seconds",
    "max_waiting",
    "max_wait_seconds",
    "overflow_queue_id",
    "overflow_to_crowd",
    "agent_selection",
    "sticky_timeout_seconds",
    "wrap_up_seconds",
    "wrap_up_codes",
)


def _name_taken(name: str) -> Conflict:
    return Conflict(f"A queue named '{name}' exists.", code="queue-name-taken", field="body.name")


def _unknown(field: str, what: str) -> InvalidInput:
    return InvalidInput(
        f"{field}: no such {what} in this tenant", code="unknown-reference", field=field
    )


def _not_itself(field: str) -> InvalidInput:
    return InvalidInput(f"{field}: must be another queue, not this one", field=field)


def _write_errors(name: str) -> dict[str, SwitchboardError]:
    """Constraints a concurrent change can still trip after our checks passed."""
    return {
        _NAME_INDEX: _name_taken(name),
        "fk_queues_business_hours": _unknown("body.business_hours_id", "business hours"),
        "fk_queues_overflow_queue": _unknown("body.overflow_queue_id", "queue"),
        "fk_queue_skills_skill": _unknown("body.required_skills", "skill"),
        "ck_queues_overflow_not_self": _not_itself("body.overflow_queue_id"),
    }


def _steps_json(steps: Sequence[RelaxationStep]) -> list[dict[str, Any]]:
    return [s.model_dump(mode="json", exclude_none=True) for s in steps]


def to_read(queue: Queue) -> QueueRead:
    return QueueRead(
        id=queue.id,
        **{k: getattr(queue, k) for k in _COLUMNS},
        required_skills=[
            RequiredSkill(skill_id=s.skill_id, min_proficiency=s.min_proficiency)
            for s in queue.required_skills
        ],
        relaxation_steps=[RelaxationStep.model_validate(s) for s in queue.relaxation_steps],
        version=queue.version,
        created_at=queue.created_at,
        updated_at=queue.updated_at,
    )


async def get(
    session: AsyncSession,
    scope: TenantScope,
    queue_id: uuid.UUID,
    *,
    for_update: bool = False,
    for_delete: bool = False,
) -> Queue:
    queue = await repository.get(
        session, scope, queue_id, for_update=for_update, for_delete=for_delete
    )
    if queue is None:
        raise NotFound("No such queue.", code="queue-not-found")
    return queue


async def _check_references(
    session: AsyncSession,
    scope: TenantScope,
    self_id: uuid.UUID | None,
    values: dict[str, Any],
) -> None:
    """Each reference in ``values`` (only the fields being set) names a resource of
    this tenant; a queue never points at itself."""
    hours_id = values.get("business_hours_id")
    if hours_id is not None and await hours_repo.get(session, scope, hours_id) is None:
        raise _unknown("body.business_hours_id", "business hours")
    overflow_id = values.get("overflow_queue_id")
    if overflow_id is not None:
        if overflow_id == self_id:
            raise _not_itself("body.overflow_queue_id")
        if await repository.get(session, scope, overflow_id) is None:
            raise _unknown("body.overflow_queue_id", "queue")
    required: list[RequiredSkill] = values.get("required_skills") or []
    found = await skills_repo.get_many(session, scope, [s.skill_id for s in required])
    for i, skill in enumerate(required):
        if skill.skill_id not in found:
            raise _unknown(f"body.required_skills.{i}.skill_id", "skill")
    steps: list[RelaxationStep] = values.get("relaxation_steps") or []
    targets = {i: s.target.queue_id for i, s in enumerate(steps) if s.target and s.target.queue_id}
    for i, target in targets.items():
        if target == self_id:
            raise _not_itself(f"body.relaxation_steps.{i}.target.queue_id")
    held = await repository.hold_existing(session, scope, set(targets.values()))
    for i, target in targets.items():
        if target not in held:
            raise _unknown(f"body.relaxation_steps.{i}.target.queue_id", "queue")


def _raise_policy_problem(
    required: Sequence[RequiredSkill], steps: Sequence[RelaxationStep], steps_given: bool
) -> None:
    problem = policy_problem(required, steps)
    if problem is None:
        return
    loc, reason = problem
    path = ".".join(str(p) for p in loc)
    if steps_given:
        raise InvalidInput(f"body.{path}: {reason}", field=f"body.{path}")
    # Only required_skills changed, and a stored relaxation step no longer fits it.
    raise InvalidInput(
        f"body.required_skills: the queue's {path} {reason}; send relaxation_steps too",
        field="body.required_skills",
    )


async def create(session: AsyncSession, scope: TenantScope, data: QueueCreate, plan: str) -> Queue:
    """Create a queue within the plan's quota (403 ``quota-exceeded`` past it)."""
    _raise_policy_problem(data.required_skills, data.relaxation_steps, steps_given=True)
    if await repository.get_by_name(session, scope, data.name):
        raise _name_taken(data.name)
    await _check_references(session, scope, None, dict(data))
    await ensure_room(session, scope, plan, "queues")
    queue = Queue(
        tenant_id=scope.tenant_id,
        **{k: getattr(data, k) for k in _COLUMNS},
        relaxation_steps=_steps_json(data.relaxation_steps),
    )
    queue.required_skills = [
        QueueSkill(
            tenant_id=scope.tenant_id,
            queue_id=queue.id,
            skill_id=s.skill_id,
            min_proficiency=s.min_proficiency,
        )
        for s in data.required_skills
    ]

    async def insert() -> Queue:
        session.add(queue)
        await session.flush()
        return queue

    return await guarded(session, insert, _write_errors(data.name))


def _skills_differ(queue: Queue, required: Sequence[RequiredSkill]) -> bool:
    stored = {(s.skill_id, s.min_proficiency) for s in queue.required_skills}
    return stored != {(s.skill_id, s.min_proficiency) for s in required}


def _replace_skills(queue: Queue, scope: TenantScope, required: Sequence[RequiredSkill]) -> None:
    """Change the required skills in place: same skill, new minimum is an UPDATE."""
    wanted = {s.skill_id: s.min_proficiency for s in required}
    for row in list(queue.required_skills):
        if row.skill_id not in wanted:
            queue.required_skills.remove(row)
        else:
            row.min_proficiency = wanted.pop(row.skill_id)
    for skill_id, minimum in wanted.items():
        queue.required_skills.append(
            QueueSkill(
                tenant_id=scope.tenant_id,
                queue_id=queue.id,
                skill_id=skill_id,
                min_proficiency=minimum,
            )
        )


async def update(
    session: AsyncSession,
    scope: TenantScope,
    queue_id: uuid.UUID,
    data: QueueUpdate,
    if_match: IfMatch,
) -> Queue:
    """Replace the fields given (lists whole); a change that changes nothing keeps
    the version."""
    queue = await get(session, scope, queue_id, for_update=True)
    if_match.check(queue.version)
    given = {k: getattr(data, k) for k in data.model_fields_set}
    required = given.get("required_skills")
    steps = given.get("relaxation_steps")
    if required is not None or steps is not None:
        _raise_policy_problem(
            required
            if required is not None
            else [
                RequiredSkill(skill_id=s.skill_id, min_proficiency=s.min_proficiency)
                for s in queue.required_skills
            ],
            steps
            if steps is not None
            else [RelaxationStep.model_validate(s) for s in queue.relaxation_steps],
            steps_given=steps is not None,
        )
    new_name = given.get("name")
    if new_name and new_name.lower() != queue.name.lower():
        other = await repository.get_by_name(session, scope, new_name)
        if other is not None and other.id != queue.id:
            raise _name_taken(new_name)
    await _check_references(session, scope, queue.id, given)
    overflow_id = given.get("overflow_queue_id")
    if overflow_id is not None and overflow_id != queue.overflow_queue_id:
        await repository.lock_overflow_graph(session, scope)
        if await repository.overflow_chain_reaches(session, scope, overflow_id, queue.id):
            raise InvalidInput(
                "body.overflow_queue_id: that queue overflows back to this one (a loop)",
                code="overflow-loop",
                field="body.overflow_queue_id",
            )

    if "channels" in given:
        await _check_channels_still_taken(session, scope, queue, given["channels"])

    columns = {k: v for k, v in given.items() if k in _COLUMNS}
    if steps is not None:
        columns["relaxation_steps"] = _steps_json(steps)
    changed = {k: v for k, v in columns.items() if getattr(queue, k) != v}
    skills_changed = required is not None and _skills_differ(queue, required)
    if not changed and not skills_changed:
        return queue  # nothing changed: same version, same ETag
    for k, v in changed.items():
        setattr(queue, k, v)
    if skills_changed and required is not None:
        _replace_skills(queue, scope, required)
    queue.version += 1
    queue.updated_at = utcnow()

    async def flush() -> Queue:
        await session.flush()
        return queue

    return await guarded(session, flush, _write_errors(new_name or queue.name))


async def _check_channels_still_taken(
    session: AsyncSession, scope: TenantScope, queue: Queue, channels: list[str]
) -> None:
    """Channels that route their conversations here keep their routing channel. The
    queue is locked, so a channel pointing at it now has committed (or waits for us)."""
    routing = await channels_repo.routing_to_queue(session, scope, queue.id)
    needing = [(i, n, rc) for i, n, t in routing if (rc := ROUTING_CHANNEL[t]) not in channels]
    if needing:
        dropped = sorted({rc for _, _, rc in needing})
        raise Conflict(
            f"Channels route their conversations to this queue and need it to take "
            f"{', '.join(dropped)}; point them at another queue first.",
            code="queue-in-use",
            field="body.channels",
            used_by=[
                {"type": "channel", "id": str(i), "name": n, "as": "routing target"}
                for i, n, _ in needing
            ],
        )


async def _used_by(
    session: AsyncSession, scope: TenantScope, queue_id: uuid.UUID
) -> list[dict[str, Any]]:
    """What points at this queue: other queues' overflow and relaxation targets,
    routing profiles that serve it, contact flows that route to it (their draft or
    published version), and channels whose inbound conversations go to it."""
    used: list[dict[str, Any]] = []
    overflow = await session.execute(
        select(col(Queue.id), col(Queue.name)).where(
            Queue.tenant_id == scope.tenant_id, Queue.overflow_queue_id == queue_id
        )
    )
    used += [{"type": "queue", "id": str(i), "name": n, "as": "overflow"} for i, n in overflow]
    relaxing = await repository.relaxation_referrers(session, scope, queue_id)
    used += [
        {"type": "queue", "id": str(i), "name": n, "as": "relaxation step"} for i, n in relaxing
    ]
    profiles = await session.execute(
        select(col(RoutingProfile.id), col(RoutingProfile.name))
        .join(
            RoutingProfileQueue,
            (col(RoutingProfileQueue.tenant_id) == col(RoutingProfile.tenant_id))
            & (col(RoutingProfileQueue.routing_profile_id) == col(RoutingProfile.id)),
        )
        .where(
            RoutingProfile.tenant_id == scope.tenant_id, RoutingProfileQueue.queue_id == queue_id
        )
    )
    used += [{"type": "routing_profile", "id": str(i), "name": n} for i, n in profiles]
    flows = await flows_repo.flows_referencing(session, scope, "queue", queue_id)
    used += [{"type": "flow", "id": str(f.flow_id), "name": f.name, "as": f.where()} for f in flows]
    channels = await channels_repo.routing_to_queue(session, scope, queue_id)
    used += [
        {"type": "channel", "id": str(i), "name": n, "as": "routing target"} for i, n, _ in channels
    ]
    return used


def _in_use(used: list[dict[str, Any]]) -> Conflict:
    return Conflict(
        "Other queues, routing profiles, contact flows or channels use this queue; remove "
        "those references first (a flow: change its draft and publish it; a channel: "
        "change its queue_id).",
        code="queue-in-use",
        used_by=used or None,
    )


async def delete(
    session: AsyncSession, scope: TenantScope, queue_id: uuid.UUID, if_match: IfMatch
) -> Queue:
    queue = await get(session, scope, queue_id, for_delete=True)
    if_match.check(queue.version)
    # Locked FOR UPDATE: anything that pointed at it has committed; new pointers wait.
    used = await _used_by(session, scope, queue.id)
    if used:
        raise _in_use(used)

    async def remove() -> Queue:
        await session.delete(queue)
        await session.flush()
        return queue

    return await guarded(session, remove, {}, default=_in_use([]))
