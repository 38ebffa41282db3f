"""Skills: names unique per tenant (case-insensitive); in-use skills cannot be deleted
(queues and agents hold them by foreign key, contact flows inside their graphs)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.concurrency import IfMatch
from app.core.errors import Conflict, NotFound
from app.db.base import utcnow
from app.db.integrity import guarded
from app.db.tenant import TenantScope
from app.flows import repository as flows_repo
from app.skills import repository
from app.skills.models import Skill
from app.skills.schemas import SkillCreate, SkillUpdate


def _name_taken(name: str) -> Conflict:
    return Conflict(f"A skill named '{name}' exists.", code="skill-name-taken", field="body.name")


async def get(
    session: AsyncSession, scope: TenantScope, skill_id: uuid.UUID, *, for_update: bool = False
) -> Skill:
    skill = await repository.get(session, scope, skill_id, for_update=for_update)
    if skill is None:
        raise NotFound("No such skill.", code="skill-not-found")
    return skill


async def create(session: AsyncSession, scope: TenantScope, data: SkillCreate) -> Skill:
    if await repository.get_by_name(session, scope, data.name):
        raise _name_taken(data.name)
    skill = Skill(
        tenant_id=scope.tenant_id, name=data.name, description=data.description, kind=data.kind
    )

    async def insert() -> Skill:
        session.add(skill)
        await session.flush()
        return skill

    return await guarded(session, insert, {"ix_skills_tenant_id_name": _name_taken(data.name)})


async def update(
    session: AsyncSession,
    scope: TenantScope,
    skill_id: uuid.UUID,
    data: SkillUpdate,
    if_match: IfMatch,
) -> Skill:
    skill = await get(session, scope, skill_id, for_update=True)
    if_match.check(skill.version)
    changes = data.model_dump(exclude_unset=True)
    if "name" in changes and changes["name"] is None:
        changes.pop("name")
    if "kind" in changes and changes["kind"] is None:
        changes.pop("kind")
    new_name = changes.get("name")
    if new_name and new_name.lower() != skill.name.lower():
        other = await repository.get_by_name(session, scope, new_name)
        if other is not None and other.id != skill.id:
            raise _name_taken(new_name)
    if not any(getattr(skill, k) != v for k, v in changes.items()):
        return skill  # nothing changed: same version, same ETag
    for k, v in changes.items():
        setattr(skill, k, v)
    skill.version += 1
    skill.updated_at = utcnow()

    async def flush() -> Skill:
        await session.flush()
        return skill

    return await guarded(session, flush, {"ix_skills_tenant_id_name": _name_taken(new_name or "")})


async def delete(
    session: AsyncSession, scope: TenantScope, skill_id: uuid.UUID, if_match: IfMatch
) -> Skill:
    skill = await get(session, scope, skill_id, for_update=True)
    if_match.check(skill.version)
    # Locked FOR UPDATE: a flow being published with it holds it (FOR KEY SHARE) until
    # it commits, and queues and agents that point at it trip their foreign keys.
    used = await _used_by(session, scope, skill.id)
    in_use = Conflict(
        "Queues, agents or contact flows use this skill; remove it from them first "
        "(a flow: change its draft and publish it).",
        code="skill-in-use",
        used_by=used or None,
    )
    if used:
        raise in_use

    async def remove() -> Skill:
        await session.delete(skill)
        await session.flush()
        return skill

    return await guarded(
        session, remove, {"fk_queue_skills_skill": in_use, "fk_agent_skills_skill": in_use}
    )


async def _used_by(
    session: AsyncSession, scope: TenantScope, skill_id: uuid.UUID
) -> list[dict[str, Any]]:
    """What uses this skill: queues that require it, agents who hold it, and contact
    flows that ask for it (``extra_skills``) in their draft or published version."""
    queues = await repository.queues_requiring(session, scope, skill_id)
    used: list[dict[str, Any]] = [{"type": "queue", "id": str(i), "name": n} for i, n in queues]
    agents = await repository.agents_holding(session, scope, skill_id)
    used += [{"type": "agent", "id": str(i), "name": n} for i, n in agents]
    flows = await flows_repo.flows_referencing(session, scope, "skill", skill_id)
    used += [{"type": "flow", "id": str(f.flow_id), "name": f.name, "as": f.where()} for f in flows]
    return used
