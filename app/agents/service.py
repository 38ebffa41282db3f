"""Agents: users of role ``agent`` (the agent's id is the user's id) with a routing
profile, a team, a supervisor and skills with proficiency 1-5.

An agent starts ``invited`` (a user without a password, and an invitation by mail),
becomes ``active`` by accepting (app/agents/invitations.py) and can be ``disabled``
and enabled again. Every agent not disabled holds a seat of the plan's "agents" quota.
Deleting an agent removes its login too, so its tokens stop working and its email is
free to be invited again.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from app.agents import repository
from app.agents.invitations import (
    InvitationMailer,
    activate_invited_agent,
    issue,
)
from app.agents.models import Agent, AgentInvitation, AgentSkill
from app.agents.schemas import AgentCreate, AgentRead, AgentSkillIn, AgentSkillRead, AgentUpdate
from app.core.concurrency import IfMatch
from app.core.errors import Conflict, InvalidInput, NotFound, SwitchboardError
from app.db.base import utcnow
from app.db.integrity import guarded
from app.db.tenant import TenantScope
from app.quotas import service as quotas
from app.routing_profiles import repository as profile_repo
from app.skills import repository as skill_repo
from app.tenants import repository as tenant_repo
from app.users import repository as user_repo
from app.users import service as user_service
from app.users.models import Role, User

__all__ = [
    "AgentView",
    "InvitationMailer",
    "activate_invited_agent",
    "create",
    "delete",
    "get",
    "load",
    "load_many",
    "resend_invitation",
    "to_read",
    "update",
]

SUPERVISOR_ROLES = (Role.supervisor.value, Role.admin.value, Role.owner.value)

quotas.register_counter("agents", repository.count_seats)


@dataclass
class AgentView:
    """An agent with its login email and skills (what the API shows)."""

    agent: Agent
    email: str
    skills: list[AgentSkill] = field(default_factory=list)


def to_read(view: AgentView) -> AgentRead:
    a = view.agent
    return AgentRead(
        id=a.id,
        email=view.email,
        display_name=a.display_name,
        status=a.status,  # type: ignore[arg-type]
        routing_profile_id=a.routing_profile_id,
        team=a.team,
        supervisor_id=a.supervisor_id,
        skills=[
            AgentSkillRead(skill_id=s.skill_id, proficiency=s.proficiency) for s in view.skills
        ],
        version=a.version,
        created_at=a.created_at,
        updated_at=a.updated_at,
    )


def _not_found() -> NotFound:
    return NotFound("No such agent.", code="agent-not-found")


async def get(
    session: AsyncSession, scope: TenantScope, agent_id: uuid.UUID, *, for_update: bool = False
) -> Agent:
    agent = await repository.get(session, scope, agent_id, for_update=for_update)
    if agent is None:
        raise _not_found()
    return agent


async def load_many(
    session: AsyncSession, scope: TenantScope, agents: Sequence[Agent]
) -> list[AgentView]:
    ids = [a.id for a in agents]
    emails = await repository.emails_of(session, scope, ids)
    skills = await repository.skills_of(session, scope, ids)
    return [AgentView(a, emails.get(a.id, ""), skills[a.id]) for a in agents]


async def load(session: AsyncSession, scope: TenantScope, agent_id: uuid.UUID) -> AgentView:
    return (await load_many(session, scope, [await get(session, scope, agent_id)]))[0]


# -- references ------------------------------------------------------------------------


def _unknown(what: str, code: str, field_path: str) -> InvalidInput:
    return InvalidInput(f"{field_path}: no such {what} in this tenant", code=code, field=field_path)


async def _check_skills(
    session: AsyncSession, scope: TenantScope, skills: list[AgentSkillIn]
) -> None:
    seen: set[uuid.UUID] = set()
    for i, s in enumerate(skills):
        if s.skill_id in seen:
            raise InvalidInput(
                f"body.skills.{i}.skill_id: the skill is listed twice",
                code="duplicate-skill",
                field=f"body.skills.{i}.skill_id",
            )
        seen.add(s.skill_id)
    known = await skill_repo.get_many(session, scope, list(seen))
    for i, s in enumerate(skills):
        if s.skill_id not in known:
            raise _unknown("skill", "unknown-skill", f"body.skills.{i}.skill_id")


async def _check_profile(session: AsyncSession, scope: TenantScope, profile_id: uuid.UUID) -> None:
    if await profile_repo.get(session, scope, profile_id) is None:
        raise _unknown("routing profile", "unknown-routing-profile", "body.routing_profile_id")


async def _check_supervisor(
    session: AsyncSession, scope: TenantScope, supervisor_id: uuid.UUID
) -> None:
    user = await user_repo.get(session, scope, supervisor_id)
    if user is None:
        raise _unknown("user", "unknown-supervisor", "body.supervisor_id")
    if user.role not in SUPERVISOR_ROLES or user.status != "active":
        raise InvalidInput(
            "body.supervisor_id: must be an active user with role supervisor, admin or owner "
            f"(this one is {'disabled' if user.status != 'active' else 'an ' + user.role})",
            code="invalid-supervisor",
            field="body.supervisor_id",
        )


def _reference_errors() -> dict[str, SwitchboardError]:
    # What a reference deleted between our checks and the write trips.
    return {
        "fk_agents_routing_profile": _unknown(
            "routing profile", "unknown-routing-profile", "body.routing_profile_id"
        ),
        "fk_agents_supervisor": _unknown("user", "unknown-supervisor", "body.supervisor_id"),
        "fk_agent_skills_skill": _unknown("skill", "unknown-skill", "body.skills"),
    }


def _skill_rows(
    scope: TenantScope, agent_id: uuid.UUID, skills: list[AgentSkillIn]
) -> list[AgentSkill]:
    return [
        AgentSkill(
            tenant_id=scope.tenant_id,
            agent_id=agent_id,
            skill_id=s.skill_id,
            proficiency=s.proficiency,
        )
        for s in skills
    ]


def _email_taken() -> Conflict:
    return Conflict("An account with this email exists.", code="email-taken", field="body.email")


# -- create ----------------------------------------------------------------------------


async def create(
    session: AsyncSession,
    scope: TenantScope,
    data: AgentCreate,
    plan: str,
    *,
    mailer: InvitationMailer | None = None,
    send_invitation: bool = True,
) -> AgentView:
    """Invite an agent: a user of role agent without a password, the agent in status
    ``invited`` and, with ``send_invitation``, an invitation mail (through ``mailer``).
    Without it (tenants as code) nobody is mailed; ``resend_invitation`` sends one later.

    Refuses: 409 email-taken (anywhere on the platform), 422 naming an unknown or
    duplicate reference, 403 quota-exceeded past the plan's agents.
    """
    if send_invitation and mailer is None:
        raise ValueError("send_invitation needs a mailer")
    email = str(data.email)
    if await user_repo.find_login(session, email) is not None:
        raise _email_taken()
    if data.routing_profile_id is not None:
        await _check_profile(session, scope, data.routing_profile_id)
    if data.supervisor_id is not None:
        await _check_supervisor(session, scope, data.supervisor_id)
    await _check_skills(session, scope, data.skills)
    await quotas.ensure_room(session, scope, plan, "agents")

    try:
        user = await user_service.create_user(
            session, scope, email=email, role=Role.agent, display_name=data.display_name
        )
    except Conflict as exc:  # the same email, taken concurrently
        raise _email_taken() from exc
    agent = Agent(
        tenant_id=scope.tenant_id,
        id=user.id,
        display_name=data.display_name,
        routing_profile_id=data.routing_profile_id,
        team=data.team,
        supervisor_id=data.supervisor_id,
        status="invited",
    )

    async def insert() -> Agent:
        session.add(agent)
        await session.flush()
        await repository.replace_skills(
            session, scope, agent.id, _skill_rows(scope, agent.id, data.skills)
        )
        return agent

    await guarded(session, insert, _reference_errors())
    if send_invitation:
        assert mailer is not None
        await issue(session, scope, agent, email, mailer)
    return await load(session, scope, agent.id)


async def resend_invitation(
    session: AsyncSession, scope: TenantScope, agent_id: uuid.UUID, mailer: InvitationMailer
) -> tuple[AgentView, AgentInvitation]:
    """A new invitation for an agent still invited; the earlier tokens stop working."""
    agent = await get(session, scope, agent_id, for_update=True)
    if agent.status != "invited":
        raise Conflict(
            f"This agent is {agent.status}; only invited agents get invitations.",
            code="agent-not-invited",
        )
    view = await load(session, scope, agent.id)
    invitation = await issue(session, scope, agent, view.email, mailer)
    return view, invitation


# -- update ----------------------------------------------------------------------------

_NOT_NULL = ("display_name", "skills", "status")


async def _user_of(session: AsyncSession, scope: TenantScope, agent: Agent) -> User:
    user = await user_repo.get(session, scope, agent.id)
    if user is None:  # pragma: no cover - the foreign key makes this impossible
        raise _not_found()
    return user


async def _change_status(
    session: AsyncSession, scope: TenantScope, agent: Agent, status: str, plan: str | None
) -> None:
    if agent.status == "invited":
        raise Conflict(
            "An invited agent becomes active by accepting the invitation; delete the agent "
            "to withdraw it.",
            code="agent-still-invited",
            field="body.status",
        )
    user = await _user_of(session, scope, agent)
    now = utcnow()
    if status == "disabled":
        user.status = "disabled"  # the next request with any of their tokens is refused
        await repository.revoke_sessions(session, scope, user.id, now)
    else:
        if plan is None:
            tenant = await tenant_repo.get(session, scope.tenant_id)
            plan = tenant.plan if tenant else "trial"
        await quotas.ensure_room(session, scope, plan, "agents")  # a seat again
        user.status = "active"
    agent.status = status


async def update(
    session: AsyncSession,
    scope: TenantScope,
    agent_id: uuid.UUID,
    data: AgentUpdate,
    if_match: IfMatch,
    *,
    plan: str | None = None,
) -> AgentView:
    """Change an agent. ``skills`` replaces the set; routing_profile_id, team and
    supervisor_id accept null to clear them; ``status`` disables (their tokens stop
    working) or enables again (a seat of ``plan``, the tenant's when not given).
    A change that changes nothing keeps the version (and the ETag)."""
    agent = await get(session, scope, agent_id, for_update=True)
    if_match.check(agent.version)
    sent = data.model_fields_set
    for name in _NOT_NULL:
        if name in sent and getattr(data, name) is None:
            raise InvalidInput(f"body.{name}: must not be null", field=f"body.{name}")

    changes = {
        k: getattr(data, k)
        for k in ("display_name", "routing_profile_id", "team", "supervisor_id")
        if k in sent and getattr(agent, k) != getattr(data, k)
    }
    if changes.get("routing_profile_id") is not None:
        await _check_profile(session, scope, changes["routing_profile_id"])
    if changes.get("supervisor_id") is not None:
        await _check_supervisor(session, scope, changes["supervisor_id"])
    skills_changed = False
    if data.skills is not None:
        await _check_skills(session, scope, data.skills)
        current = (await repository.skills_of(session, scope, [agent.id]))[agent.id]
        skills_changed = {(s.skill_id, s.proficiency) for s in current} != {
            (s.skill_id, s.proficiency) for s in data.skills
        }
    status_changed = data.status is not None and data.status != agent.status
    if not changes and not skills_changed and not status_changed:
        return await load(session, scope, agent.id)

    if status_changed and data.status is not None:
        await _change_status(session, scope, agent, data.status, plan)
    if "display_name" in changes:
        (await _user_of(session, scope, agent)).display_name = changes["display_name"]
    new_skills = data.skills

    async def apply() -> Agent:
        for k, v in changes.items():
            setattr(agent, k, v)
        agent.version += 1
        agent.updated_at = utcnow()
        await session.flush()
        if skills_changed and new_skills is not None:
            await repository.replace_skills(
                session, scope, agent.id, _skill_rows(scope, agent.id, new_skills)
            )
        return agent

    await guarded(session, apply, _reference_errors())
    return await load(session, scope, agent.id)


# -- delete ----------------------------------------------------------------------------


async def delete(
    session: AsyncSession, scope: TenantScope, agent_id: uuid.UUID, if_match: IfMatch
) -> AgentView:
    """Disable the agent's login, then remove the agent and its user: their tokens stop
    working, their seat is free and their email can be invited again."""
    view = await load(session, scope, agent_id)
    agent = await get(session, scope, agent_id, for_update=True)
    if_match.check(agent.version)
    user = await _user_of(session, scope, agent)
    user.status = "disabled"
    await repository.revoke_sessions(session, scope, user.id, utcnow())

    async def remove() -> Agent:
        await session.delete(agent)
        await session.flush()
        await repository.delete_login(session, scope, user)
        return agent

    await guarded(
        session,
        remove,
        {},
        default=Conflict("Other records refer to this agent.", code="agent-in-use"),
    )
    return view
