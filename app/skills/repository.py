from __future__ import annotations

import uuid

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.agents.models import Agent, AgentSkill
from app.db import tenant_rows
from app.db.tenant import TenantScope
from app.queues.models import Queue, QueueSkill
from app.skills.models import Skill


async def get(
    session: AsyncSession, scope: TenantScope, skill_id: uuid.UUID, *, for_update: bool = False
) -> Skill | None:
    lock: tenant_rows.Lock | None = "update" if for_update else None
    return await tenant_rows.get(session, Skill, scope, skill_id, lock=lock)


async def get_by_name(session: AsyncSession, scope: TenantScope, name: str) -> Skill | None:
    return await tenant_rows.get_by_name(session, Skill, scope, name)


async def get_many(
    session: AsyncSession, scope: TenantScope, ids: list[uuid.UUID]
) -> dict[uuid.UUID, Skill]:
    return await tenant_rows.get_many(session, Skill, scope, ids)


async def list_page(
    session: AsyncSession,
    scope: TenantScope,
    limit: int,
    after_id: uuid.UUID | None,
    kind: str | None = None,
) -> list[Skill]:
    where = [Skill.kind == kind] if kind else []
    return await tenant_rows.list_page(session, Skill, scope, limit, after_id, *where)


async def queues_requiring(
    session: AsyncSession, scope: TenantScope, skill_id: uuid.UUID
) -> list[tuple[uuid.UUID, str]]:
    """(id, name) of the tenant's queues that require the skill, by name."""
    stmt = (
        select(col(Queue.id), col(Queue.name))
        .join(
            QueueSkill,
            (col(QueueSkill.tenant_id) == col(Queue.tenant_id))
            & (col(QueueSkill.queue_id) == col(Queue.id)),
        )
        .where(Queue.tenant_id == scope.tenant_id, QueueSkill.skill_id == skill_id)
        .order_by(func.lower(col(Queue.name)), col(Queue.id))
    )
    return [(row[0], row[1]) for row in await session.execute(stmt)]


async def agents_holding(
    session: AsyncSession, scope: TenantScope, skill_id: uuid.UUID
) -> list[tuple[uuid.UUID, str]]:
    """(id, display name) of the tenant's agents who hold the skill, by name."""
    stmt = (
        select(col(Agent.id), col(Agent.display_name))
        .join(
            AgentSkill,
            (col(AgentSkill.tenant_id) == col(Agent.tenant_id))
            & (col(AgentSkill.agent_id) == col(Agent.id)),
        )
        .where(Agent.tenant_id == scope.tenant_id, AgentSkill.skill_id == skill_id)
        .order_by(func.lower(col(Agent.display_name)), col(Agent.id))
    )
    return [(row[0], row[1]) for row in await session.execute(stmt)]
