"""Agent invitations: a single-use token by mail, accepted with a password (or by
signing in through the tenant's single sign-on, see ``activate_invited_agent``).

The token is an ``sbi`` credential (app.auth.secrets): it names its tenant, so the
public accept call binds row-level security before it reads anything; only a hash of
its secret is stored. Re-sending deletes the pending invitations (their tokens stop
working) and issues a new one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.agents import repository
from app.agents.models import Agent, AgentInvitation
from app.auth import passwords, secrets
from app.auth.principal import check_tenant_status
from app.core.errors import InvalidInput
from app.db.base import utcnow, uuid7
from app.db.tenant import TenantScope, bind_tenant, mint_scope
from app.mail import service as mail_service
from app.mail.adapters import MailSender
from app.tenants import repository as tenant_repo
from app.users import repository as user_repo
from app.users.models import User

INVITATION_TTL = timedelta(days=7)
ACCEPT_PATH = "/v1/agents/invitations/accept"


@dataclass(frozen=True)
class InvitationMailer:
    """How invitation mail goes out: the app's sender, and where to accept."""

    sender: MailSender
    factory: async_sessionmaker[AsyncSession] | None
    public_url: str

    @property
    def accept_url(self) -> str:
        return self.public_url.rstrip("/") + ACCEPT_PATH


@dataclass(frozen=True)
class Accepted:
    scope: TenantScope
    agent: Agent
    user: User


def _invalid() -> InvalidInput:
    return InvalidInput(
        "The invitation token is invalid, expired or already used; ask for a new invitation.",
        code="invalid-invitation-token",
        field="body.token",
    )


async def issue(
    session: AsyncSession,
    scope: TenantScope,
    agent: Agent,
    email: str,
    mailer: InvitationMailer,
) -> AgentInvitation:
    """Revoke the agent's pending invitations, make a new one and queue its mail."""
    await repository.delete_pending_invitations(session, scope, agent.id)
    invitation_id = uuid7()
    token, secret_hash = secrets.issue("sbi", scope.tenant_id, invitation_id)
    invitation = AgentInvitation(
        tenant_id=scope.tenant_id,
        id=invitation_id,
        agent_id=agent.id,
        secret_hash=secret_hash,
        expires_at=utcnow() + INVITATION_TTL,
    )
    session.add(invitation)
    await session.flush()
    tenant = await tenant_repo.get(session, scope.tenant_id)
    company = tenant.name if tenant else "your company"
    await mail_service.enqueue(
        session,
        scope,
        mailer.sender,
        mailer.factory,
        kind="agent-invitation",
        to=email,
        subject=f"You are invited to answer contacts for {company} on Switchboard",
        body=(
            f"Hello {agent.display_name},\n\n"
            f"{company} invited you to join its contact center on Switchboard as an agent.\n\n"
            f"To accept, choose a password and send it with this token to {mailer.accept_url}:"
            f"\n\n{token}\n\n"
            f"The invitation expires on {invitation.expires_at:%Y-%m-%d %H:%M} UTC. If your "
            "company signs in with single sign-on, signing in there accepts it too."
        ),
    )
    return invitation


async def bind_for_token(session: AsyncSession, credential: str) -> TenantScope | None:
    """Bind the tenant a well-formed invitation token names (for Idempotency-Key
    replays before the token is checked); None when it names no tenant."""
    parsed = secrets.parse(credential, "sbi")
    if parsed is None or await tenant_repo.get(session, parsed.tenant_id) is None:
        return None
    scope = mint_scope(parsed.tenant_id)
    await bind_tenant(session, scope)
    return scope


async def accept(
    session: AsyncSession, credential: str, password: str, display_name: str | None
) -> Accepted:
    """Spend an invitation: set the password, verify the email, make the agent active.

    Refuses a token that is malformed, unknown, used, revoked or expired with 422
    invalid-invitation-token, and a weak password with 422 weak-password; either way
    nothing changes and a valid token stays usable.
    """
    parsed = secrets.parse(credential, "sbi")
    if parsed is None:
        raise _invalid()
    scope = mint_scope(parsed.tenant_id)
    await bind_tenant(session, scope)
    invitation = await repository.get_invitation(session, scope, parsed.record_id, for_update=True)
    now = utcnow()
    if (
        invitation is None
        or not secrets.secret_matches(parsed.secret, invitation.secret_hash)
        or invitation.accepted_at is not None
        or invitation.expires_at <= now
    ):
        raise _invalid()
    agent = await repository.get(session, scope, invitation.agent_id, for_update=True)
    user = await user_repo.get(session, scope, invitation.agent_id)
    tenant = await tenant_repo.get(session, scope.tenant_id)
    if agent is None or user is None or tenant is None or agent.status != "invited":
        raise _invalid()
    check_tenant_status(tenant)
    name = display_name or agent.display_name
    problem = passwords.password_problem(
        password, [user.email, user.email.split("@")[0], name, tenant.name]
    )
    if problem:
        raise InvalidInput(f"password {problem}", code="weak-password", field="body.password")

    invitation.accepted_at = now
    user.password_hash = await passwords.hash_password_async(password)
    _activate(agent, user, name)
    await session.flush()
    return Accepted(scope, agent, user)


def _activate(agent: Agent, user: User, display_name: str | None = None) -> None:
    now = utcnow()
    agent.status = "active"
    if display_name and display_name != agent.display_name:
        agent.display_name = display_name
    user.display_name = agent.display_name
    user.status = "active"
    if user.email_verified_at is None:
        user.email_verified_at = now  # the invitation reached this address
    agent.version += 1
    agent.updated_at = now


async def activate_invited_agent(
    session: AsyncSession, scope: TenantScope, user_id: uuid.UUID
) -> Agent | None:
    """Accept an invitation by single sign-on: the tenant's identity provider vouched
    for the invited agent's email, so the agent becomes active and their pending
    invitations are spent. Call it after an SSO login found or provisioned ``user_id``
    (tenant bound on the session). Returns the agent it activated, or None when the user
    is not an invited agent (a no-op, safe on every login).
    """
    agent = await repository.get(session, scope, user_id, for_update=True)
    if agent is None or agent.status != "invited":
        return None
    user = await user_repo.get(session, scope, user_id)
    if user is None:  # pragma: no cover - the foreign key makes this impossible
        return None
    await repository.delete_pending_invitations(session, scope, agent.id)
    _activate(agent, user)
    await session.flush()
    return agent
