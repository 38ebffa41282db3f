"""Skills: names unique per tenant (case-insensitive); in-use skills cannot be deleted."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.concurrency import IfMatch
from app.core.errors import Conflict, NotFound
from app.db.base import utcnow
from app.db.integrity import guarded
from app.db.tenant import TenantScope
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
    in_use = Conflict(
        "Queues or agents use this skill; remove it from them first.", code="skill-in-use"
    )

    async def remove() -> Skill:
        await session.delete(skill)
        await session.flush()
        return skill

    return await guarded(
        session, remove, {"fk_queue_skills_skill": in_use, "fk_agent_skills_skill": in_use}
    )
