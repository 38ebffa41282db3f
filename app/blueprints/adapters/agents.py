"""Agents in blueprints: named by email; a demo may give a password, which activates
the agent at once instead of mailing an invitation (never read back or compared)."""

from __future__ import annotations

from typing import Any

from sqlmodel import select

from app.agents import invitations, service
from app.agents import repository as agent_repo
from app.agents.invitations import InvitationMailer
from app.agents.schemas import AgentCreate, AgentUpdate
from app.auth import passwords
from app.blueprints.adapters.common import require_mapping
from app.blueprints.adapters.generic import ServiceAdapter, no_if_match
from app.blueprints.adapters.provisioning import every
from app.blueprints.engine import Context
from app.core.errors import InvalidInput
from app.db.base import utcnow
from app.mail.adapters import sender_for
from app.users import repository as user_repo
from app.users.models import User


async def _agents(ctx: Context) -> list[Any]:
    rows = await every(agent_repo.list_page)(ctx)
    return list(await service.load_many(ctx.session, ctx.scope, rows))


async def _users(ctx: Context) -> None:
    """Supervisors are users (owners, admins, supervisors) named by email."""
    rows = await ctx.session.execute(select(User).where(User.tenant_id == ctx.scope.tenant_id))
    for user in rows.scalars():
        ctx.remember("users", user.email, user.id)


async def _update_agent(ctx: Context, rid: Any, data: Any) -> Any:
    return await service.update(ctx.session, ctx.scope, rid, data, no_if_match(), plan=ctx.plan)


class AgentsAdapter(ServiceAdapter):
    def __init__(self) -> None:
        super().__init__(
            "agents",
            AgentCreate,
            AgentUpdate,
            _agents,
            service.to_read,
            self._create_agent,
            _update_agent,
            lambda ctx, rid: service.delete(ctx.session, ctx.scope, rid, no_if_match()),
            identity="email",
            unordered=("skills",),
            drop=("status",),
            references=_users,
        )

    def normalize(self, ctx: Context, item: dict[str, Any], where: str) -> dict[str, Any]:
        raw = dict(require_mapping(item, where))
        password = raw.pop("password", None)
        if password is not None:
            if not isinstance(password, str):
                raise InvalidInput("must be a string", field=f"{where}.password")
            problem = passwords.password_problem(password, [str(raw.get("email", ""))])
            if problem:
                raise InvalidInput(
                    f"password {problem}", code="weak-password", field=f"{where}.password"
                )
            ctx.write_only[f"agent-password:{str(raw.get('email', '')).lower()}"] = password
        return super().normalize(ctx, raw, where)

    async def _create_agent(self, ctx: Context, data: Any) -> Any:
        password = ctx.write_only.get(f"agent-password:{str(data.email).lower()}")
        mailer = InvitationMailer(sender_for(ctx.settings), None, ctx.settings.public_url)
        view = await service.create(
            ctx.session,
            ctx.scope,
            data,
            ctx.plan,
            mailer=mailer,
            send_invitation=password is None,
        )
        if password is not None:
            user = await user_repo.get(ctx.session, ctx.scope, view.agent.id)
            assert user is not None
            user.password_hash = await passwords.hash_password_async(password)
            user.email_verified_at = utcnow()
            agent = await invitations.activate_invited_agent(ctx.session, ctx.scope, user.id)
            if agent is not None:
                view.agent = agent
        return view
