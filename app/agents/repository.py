from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import ColumnElement, delete, func, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.agents.models import Agent, AgentInvitation, AgentSkill
from app.auth.models import RefreshToken
from app.db import tenant_rows
from app.db.tenant import TenantScope
from app.users.models import LoginEmail, User


async def get(
    session: AsyncSession, scope: TenantScope, agent_id: uuid.UUID, *, for_update: bool = False
) -> Agent | None:
    lock: tenant_rows.Lock | None = "update" if for_update else None
    return await tenant_rows.get(session, Agent, scope, agent_id, lock=lock)


async def get_many(
    session: AsyncSession, scope: TenantScope, ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, Agent]:
    return await tenant_rows.get_many(session, Agent, scope, ids)


async def get_by_email(session: AsyncSession, scope: TenantScope, email: str) -> Agent | None:
    stmt = (
        select(Agent)
        .join(User, (col(User.tenant_id) == col(Agent.tenant_id)) & (col(User.id) == col(Agent.id)))
        .where(Agent.tenant_id == scope.tenant_id, func.lower(User.email) == email.lower())
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_page(
    session: AsyncSession,
    scope: TenantScope,
    limit: int,
    after_id: uuid.UUID | None,
    *,
    team: str | None = None,
    status: str | None = None,
    skill_id: uuid.UUID | None = None,
) -> list[Agent]:
    where: list[ColumnElement[bool] | bool] = []
    if team is not None:
        where.append(func.lower(Agent.team) == team.lower())
    if status is not None:
        where.append(Agent.status == status)
    if skill_id is not None:
        holds_skill = select(AgentSkill.agent_id).where(
            AgentSkill.tenant_id == scope.tenant_id,
            AgentSkill.agent_id == Agent.id,
            AgentSkill.skill_id == skill_id,
        )
        where.append(holds_skill.exists())
    return await tenant_rows.list_page(session, Agent, scope, limit, after_id, *where)


async def count_seats(session: AsyncSession, scope: TenantScope) -> int:
    """Agents that hold a seat: every agent not disabled (invited ones included)."""
    stmt = select(func.count()).where(
        Agent.tenant_id == scope.tenant_id, Agent.status != "disabled"
    )
    return int((await session.execute(stmt)).scalar_one())


async def emails_of(
    session: AsyncSession, scope: TenantScope, ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, str]:
    ids = list(ids)
    if not ids:
        return {}
    stmt = select(User.id, User.email).where(
        User.tenant_id == scope.tenant_id, col(User.id).in_(ids)
    )
    return {row[0]: row[1] for row in (await session.execute(stmt)).all()}


async def skills_of(
    session: AsyncSession, scope: TenantScope, ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, list[AgentSkill]]:
    ids = list(ids)
    out: dict[uuid.UUID, list[AgentSkill]] = {i: [] for i in ids}
    if not ids:
        return out
    stmt = (
        select(AgentSkill)
        .where(AgentSkill.tenant_id == scope.tenant_id, col(AgentSkill.agent_id).in_(ids))
        .order_by(col(AgentSkill.proficiency).desc(), col(AgentSkill.skill_id))
    )
    for row in (await session.execute(stmt)).scalars():
        out[row.agent_id].append(row)
    return out


async def replace_skills(
    session: AsyncSession, scope: TenantScope, agent_id: uuid.UUID, rows: list[AgentSkill]
) -> None:
    await session.execute(
        delete(AgentSkill).where(
            col(AgentSkill.tenant_id) == scope.tenant_id, col(AgentSkill.agent_id) == agent_id
        )
    )
    session.add_all(rows)
    await session.flush()


# -- invitations ---------------------------------------------------------------------------


async def get_invitation(
    session: AsyncSession, scope: TenantScope, invitation_id: uuid.UUID, *, for_update: bool = False
) -> AgentInvitation | None:
    stmt = select(AgentInvitation).where(
        AgentInvitation.tenant_id == scope.tenant_id, AgentInvitation.id == invitation_id
    )
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def delete_pending_invitations(
    session: AsyncSession, scope: TenantScope, agent_id: uuid.UUID
) -> None:
    """Revoke the agent's invitations not yet accepted (their tokens stop working)."""
    await session.execute(
        delete(AgentInvitation).where(
            col(AgentInvitation.tenant_id) == scope.tenant_id,
            col(AgentInvitation.agent_id) == agent_id,
            col(AgentInvitation.accepted_at).is_(None),
        )
    )


# -- the agent's login (users and refresh tokens are read through their models) ----------


async def revoke_sessions(
    session: AsyncSession, scope: TenantScope, user_id: uuid.UUID, now: datetime
) -> None:
    """Revoke every refresh token of the user, so enabling them again later does not
    bring old sessions back."""
    await session.execute(
        update(RefreshToken)
        .where(
            col(RefreshToken.tenant_id) == scope.tenant_id,
            col(RefreshToken.user_id) == user_id,
            col(RefreshToken.revoked_at).is_(None),
        )
        .values(revoked_at=now)
    )


async def delete_login(session: AsyncSession, scope: TenantScope, user: User) -> None:
    """Remove the user and the platform index entry of their email (freeing it)."""
    await session.execute(
        delete(LoginEmail).where(
            col(LoginEmail.email) == user.email.lower(),
            col(LoginEmail.tenant_id) == scope.tenant_id,
            col(LoginEmail.user_id) == user.id,
        )
    )
    await session.delete(user)
    await session.flush()
