from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response, status

from app.agents import invitations, repository, service
from app.agents.schemas import (
    AcceptInvitation,
    AgentCreate,
    AgentRead,
    AgentUpdate,
    InvitationSent,
    audit_details,
)
from app.agents.service import AgentView, InvitationMailer
from app.audit.service import audit
from app.auth.endpoints import user_read
from app.auth.principal import Principal, require
from app.auth.schemas import UserRead
from app.core.concurrency import IfMatchDep, etag, with_etag
from app.core.openapi import PRECONDITION_FAILED, WITH_ETAG, example, problem, scope_or_quota
from app.core.pagination import Page, PageParams, page_params, page_rows
from app.db.engine import SessionDep
from app.idempotency.service import IdempotencyDep

router = APIRouter(prefix="/v1/agents", tags=["agents"])

AgentsRead = Annotated[Principal, require("agents:read")]
AgentsWrite = Annotated[Principal, require("agents:write")]

_UNKNOWN_SKILL = example(
    422,
    "unknown-skill",
    "body.skills.0.skill_id: no such skill in this tenant",
    field="body.skills.0.skill_id",
)
INVALID = problem(
    "Validation failed, naming the field",
    example(
        422,
        "validation-failed",
        "body.skills.0.proficiency: Input should be less than or equal to 5",
        field="body.skills.0.proficiency",
    ),
    _UNKNOWN_SKILL,
    example(
        422,
        "duplicate-skill",
        "body.skills.1.skill_id: the skill is listed twice",
        field="body.skills.1.skill_id",
    ),
    example(
        422,
        "unknown-routing-profile",
        "body.routing_profile_id: no such routing profile in this tenant",
        field="body.routing_profile_id",
    ),
    example(
        422,
        "unknown-supervisor",
        "body.supervisor_id: no such user in this tenant",
        field="body.supervisor_id",
    ),
    example(
        422,
        "invalid-supervisor",
        "body.supervisor_id: must be an active user with role supervisor, admin or owner "
        "(this one is an agent)",
        field="body.supervisor_id",
    ),
)
SEATS = scope_or_quota("agents:write", "agents", 10)


def _mailer(request: Request) -> InvitationMailer:
    st = request.app.state
    return InvitationMailer(st.mail_sender, st.session_factory, st.settings.public_url)


def _ok(view: AgentView) -> Response:
    return with_etag(service.to_read(view), view.agent.version)


# Before the "/{agent_id}" routes: a literal path segment, public (no credentials).
@router.post(
    "/invitations/accept",
    response_model=UserRead,
    responses={
        403: problem(
            "The tenant is suspended or closed",
            example(403, "tenant-suspended", "This tenant is suspended."),
        ),
        422: problem(
            "The token is not one that can be accepted, or the password is too weak",
            example(
                422,
                "invalid-invitation-token",
                "The invitation token is invalid, expired or already used; ask for a new "
                "invitation.",
                field="body.token",
            ),
            example(
                422,
                "weak-password",
                "password is too weak (this is a top-100 common password); use a longer passphrase",
                field="body.password",
            ),
        ),
    },
)
async def accept_invitation(
    body: AcceptInvitation, request: Request, session: SessionDep, idem: IdempotencyDep
) -> Response:
    """Accept an invitation (no credentials: the token is one): choose a password; the
    agent becomes active and can then log in at POST /v1/auth/token."""
    scope = await invitations.bind_for_token(session, body.token)
    if scope is not None and (replay := await idem.replay()) is not None:
        return replay
    accepted = await invitations.accept(session, body.token, body.password, body.display_name)
    audit(
        request,
        "agent.accept_invitation",
        "agent",
        accepted.agent.id,
        scope=accepted.scope,
        actor_type="user",
        actor_id=accepted.user.id,
    )
    return await idem.respond(200, user_read(accepted.user))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=AgentRead,
    responses={
        201: WITH_ETAG,
        403: SEATS,
        409: problem(
            "The email has an account already",
            example(409, "email-taken", "An account with this email exists.", field="body.email"),
        ),
        422: INVALID,
    },
)
async def invite_agent(
    body: AgentCreate,
    request: Request,
    session: SessionDep,
    principal: AgentsWrite,
    idem: IdempotencyDep,
) -> Response:
    """Invite an agent: they get a mail with a token to accept (status invited until then)."""
    if (replay := await idem.replay()) is not None:
        return replay
    view = await service.create(
        session, principal.scope, body, principal.tenant.plan, mailer=_mailer(request)
    )
    audit(request, "agent.invite", "agent", view.agent.id, email=view.email)
    return await idem.respond(
        201, service.to_read(view), headers={"ETag": etag(view.agent.version)}
    )


@router.get("", response_model=Page[AgentRead])
async def list_agents(
    session: SessionDep,
    principal: AgentsRead,
    page: Annotated[PageParams, Depends(page_params)],
    team: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=100,
            pattern=r"^[^\x00-\x1f\x7f]*$",
            description="Team (any case)",
        ),
    ] = None,
    status: Annotated[Literal["invited", "active", "disabled"] | None, Query()] = None,
    skill_id: Annotated[uuid.UUID | None, Query(description="Agents holding this skill")] = None,
) -> Page[AgentRead]:
    """This tenant's agents, newest first, optionally filtered."""
    rows = await repository.list_page(
        session,
        principal.scope,
        page.limit,
        page.after_id,
        team=" ".join(team.split()) if team else None,
        status=status,
        skill_id=skill_id,
    )
    rows, next_cursor = page_rows(rows, page.limit)
    views = await service.load_many(session, principal.scope, rows)
    return Page(items=[service.to_read(v) for v in views], next_cursor=next_cursor)


@router.get("/{agent_id}", response_model=AgentRead, responses={200: WITH_ETAG})
async def get_agent(agent_id: uuid.UUID, session: SessionDep, principal: AgentsRead) -> Response:
    return _ok(await service.load(session, principal.scope, agent_id))


@router.patch(
    "/{agent_id}",
    response_model=AgentRead,
    responses={
        200: WITH_ETAG,
        403: SEATS,
        409: problem(
            "An invited agent's status changes only by accepting",
            example(
                409,
                "agent-still-invited",
                "An invited agent becomes active by accepting the invitation; delete the "
                "agent to withdraw it.",
                field="body.status",
            ),
        ),
        412: PRECONDITION_FAILED,
        422: INVALID,
    },
)
async def update_agent(
    agent_id: uuid.UUID,
    body: AgentUpdate,
    request: Request,
    session: SessionDep,
    principal: AgentsWrite,
    if_match: IfMatchDep,
) -> Response:
    """Change an agent: skills (replaces the set), team, routing profile, supervisor,
    display name, or status (disable / enable)."""
    view = await service.update(
        session, principal.scope, agent_id, body, if_match, plan=principal.tenant.plan
    )
    audit(request, "agent.update", "agent", view.agent.id, **audit_details(body))
    return _ok(view)


@router.delete(
    "/{agent_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        409: problem(
            "Other records still refer to this agent",
            example(409, "agent-in-use", "Other records refer to this agent."),
        ),
        412: PRECONDITION_FAILED,
    },
)
async def delete_agent(
    agent_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    principal: AgentsWrite,
    if_match: IfMatchDep,
) -> Response:
    """Remove an agent and their login: their tokens stop working at once, the seat is
    free and the email can be invited again."""
    view = await service.delete(session, principal.scope, agent_id, if_match)
    audit(request, "agent.delete", "agent", view.agent.id, email=view.email)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{agent_id}/invitation",
    status_code=status.HTTP_201_CREATED,
    response_model=InvitationSent,
    responses={
        409: problem(
            "The agent is not invited any more",
            example(
                409,
                "agent-not-invited",
                "This agent is active; only invited agents get invitations.",
            ),
        )
    },
)
async def resend_invitation(
    agent_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    principal: AgentsWrite,
    idem: IdempotencyDep,
) -> Response:
    """Send a new invitation to an agent still invited; earlier tokens stop working."""
    if (replay := await idem.replay()) is not None:
        return replay
    view, invitation = await service.resend_invitation(
        session, principal.scope, agent_id, _mailer(request)
    )
    audit(request, "agent.resend_invitation", "agent", agent_id, email=view.email)
    return await idem.respond(
        201,
        InvitationSent(agent_id=agent_id, email=view.email, expires_at=invitation.expires_at),
    )
