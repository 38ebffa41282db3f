"""Contacts, agent presence, reservations and routing explanations (REST).

The agent desktop's WebSocket is in ``app.routing.stream``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Request, Response, status

from app.audit.service import audit
from app.auth.principal import Principal, require
from app.auth.scopes import register
from app.core.errors import Forbidden, InvalidInput
from app.core.openapi import example, not_found, problem, scope_or_quota
from app.core.pagination import PageParams, page_params, page_rows
from app.db.engine import SessionDep
from app.idempotency.service import IdempotencyDep
from app.routing import contacts, explain, presence, reservations
from app.routing.connection import raw
from app.routing.schemas import (
    AgentRouting,
    CallbackRequest,
    ContactCreate,
    ContactRead,
    ContactState,
    PresenceRead,
    PresenceUpdate,
    ReservationRead,
    RoutingTrail,
    WrapUpRequest,
)

register("contacts:read", "Read contacts and their place in line", ("owner", "admin", "supervisor"))
register(
    "contacts:write", "Enqueue contacts, abandon them, turn them into callbacks", ("owner", "admin")
)
register(
    "routing:read", "Read routing decisions and explanations", ("owner", "admin", "supervisor")
)
register("agent:work", "Take work as an agent: presence, offers, wrap-up", ("agent",))

router = APIRouter(tags=["routing"])
_Endpoint = TypeVar("_Endpoint", bound=Callable[..., Any])

ContactsRead = Annotated[Principal, require("contacts:read")]
ContactsWrite = Annotated[Principal, require("contacts:write")]
RoutingRead = Annotated[Principal, require("routing:read")]
AgentWork = Annotated[Principal, require("agent:work")]
AgentsWrite = Annotated[Principal, require("agents:write")]

CONTACT_NOT_FOUND = not_found("contact-not-found")
RESERVATION_NOT_FOUND = not_found("reservation-not-found")
NOT_WAITING = problem(
    "The contact is no longer waiting",
    example(
        409,
        "contact-not-waiting",
        "The contact is in_progress; only a waiting contact can be abandoned.",
    ),
)
RESERVATION_STATE = problem(
    "The reservation is not in the state this step needs",
    example(
        409, "reservation-not-offered", "The reservation is timed_out; accepting needs it offered."
    ),
    example(409, "offer-expired", "The offer expired; the contact went back to the queue."),
)
ENQUEUE_INVALID = problem(
    "Validation failed: names the field and the reason",
    example(
        422,
        "unknown-reference",
        "body.queue_id: no such queue in this tenant",
        field="body.queue_id",
    ),
    example(
        422,
        "channel-not-taken",
        "body.channel: the queue takes voice, chat, not email",
        field="body.channel",
    ),
    example(
        422,
        "flow-did-not-queue",
        "body.flow_id: the flow ended without queueing the contact (end)",
        field="body.flow_id",
    ),
)


def _agent_id(principal: Principal) -> uuid.UUID:
    if principal.user_id is None or principal.role != "agent":
        raise Forbidden("Only an agent signed in as themselves can do this.", code="agent-only")
    return principal.user_id


def _grace(request: Request) -> float:
    return float(request.app.state.settings.routing_heartbeat_grace_seconds)


# ---------------------------------------------------------------------------- contacts


@router.post(
    "/v1/contacts",
    status_code=status.HTTP_201_CREATED,
    response_model=ContactRead,
    responses={
        403: scope_or_quota("contacts:write", "concurrent_contacts", 20),
        409: problem(
            "The queue is full", example(409, "queue-full", "The queue is full (50 waiting).")
        ),
        422: ENQUEUE_INVALID,
    },
    tags=["contacts"],
)
async def create_contact(
    body: ContactCreate, session: SessionDep, principal: ContactsWrite, idem: IdempotencyDep
) -> Response:
    """Put a contact of any channel in line, in a queue or where a contact flow sends it.
    Counts against the plan's concurrent-contacts quota until it ends."""
    if (replay := await idem.replay()) is not None:
        return replay
    cid = await contacts.enqueue(session, principal.scope, principal.tenant.plan, body)
    read = await contacts.read(session, principal.scope, cid)
    return await idem.respond(201, read)


@router.get(
    "/v1/contacts",
    response_model=list[ContactRead],
    responses={
        200: {
            "headers": {
                "Link": {
                    "description": 'The next page, if any: `<...?cursor=...>; rel="next"`',
                    "schema": {"type": "string"},
                }
            }
        },
        422: problem(
            "The cursor names no contact of this tenant",
            example(422, "validation-failed", "cursor is not one this API issued"),
        ),
    },
    tags=["contacts"],
)
async def list_contacts(
    request: Request,
    response: Response,
    session: SessionDep,
    principal: ContactsRead,
    page: Annotated[PageParams, Depends(page_params)],
    state: ContactState | None = None,
    queue_id: uuid.UUID | None = None,
) -> list[ContactRead]:
    """The newest contacts first, optionally of one state and one queue. The body stays a
    plain list; a further page is announced in the `Link` header (RFC 8288), whose
    `cursor` continues after the last contact shown."""
    conn = await raw(session)
    after: Any = None
    if page.after_id is not None:
        after = await conn.fetchrow(
            "SELECT created_at, id FROM contacts WHERE tenant_id = $1 AND id = $2",
            principal.tenant_id,
            page.after_id,
        )
        if after is None:
            raise InvalidInput("cursor is not one this API issued", field="query.cursor")
    rows = await conn.fetch(
        """
        SELECT * FROM contacts WHERE tenant_id = $1
           AND ($2::text IS NULL OR state = $2) AND ($3::uuid IS NULL OR queue_id = $3)
           AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5::uuid))
         ORDER BY created_at DESC, id DESC LIMIT $6
        """,
        principal.tenant_id,
        state,
        queue_id,
        after["created_at"] if after else None,
        after["id"] if after else None,
        page.limit + 1,
    )
    shown, next_cursor = page_rows(rows, page.limit, key=lambda r: r["id"])
    if next_cursor is not None:
        url = request.url.include_query_params(cursor=next_cursor, limit=page.limit)
        response.headers["Link"] = f'<{url}>; rel="next"'
    return [contacts.to_read(r, None, None) for r in shown]


@router.get(
    "/v1/contacts/{contact_id}",
    response_model=ContactRead,
    responses={404: CONTACT_NOT_FOUND},
    tags=["contacts"],
)
async def get_contact(
    contact_id: uuid.UUID, session: SessionDep, principal: ContactsRead
) -> ContactRead:
    """State, and for a waiting contact its position in line and estimated wait."""
    return await contacts.read(session, principal.scope, contact_id)


@router.post(
    "/v1/contacts/{contact_id}/abandon",
    response_model=ContactRead,
    responses={404: CONTACT_NOT_FOUND, 409: NOT_WAITING},
    tags=["contacts"],
)
async def abandon_contact(
    contact_id: uuid.UUID, session: SessionDep, principal: ContactsWrite
) -> ContactRead:
    """The customer left: the contact leaves the line; its time waited is kept."""
    return await contacts.abandon(session, principal.scope, contact_id)


@router.post(
    "/v1/contacts/{contact_id}/callback",
    response_model=ContactRead,
    responses={404: CONTACT_NOT_FOUND, 409: NOT_WAITING},
    tags=["contacts"],
)
async def callback_contact(
    contact_id: uuid.UUID, body: CallbackRequest, session: SessionDep, principal: ContactsWrite
) -> ContactRead:
    """Virtual hold: keep the place in line and call the customer back when it comes."""
    return await contacts.make_callback(session, principal.scope, contact_id, body.number)


@router.get(
    "/v1/contacts/{contact_id}/routing",
    response_model=RoutingTrail,
    responses={404: CONTACT_NOT_FOUND},
    tags=["contacts"],
)
async def contact_routing(
    contact_id: uuid.UUID, session: SessionDep, principal: RoutingRead
) -> RoutingTrail:
    """The decision trail (steps, offers, outcomes, each with why) and, while the contact
    waits, every agent with the reason they are passed over now."""
    return await explain.contact_trail(await raw(session), principal.scope, contact_id)


# ---------------------------------------------------------------------------- presence


@router.get("/v1/agent/presence", response_model=PresenceRead, tags=["agent desktop"])
async def my_presence(session: SessionDep, principal: AgentWork) -> PresenceRead:
    return await presence.read(await raw(session), principal.scope, _agent_id(principal))


@router.put(
    "/v1/agent/presence",
    response_model=PresenceRead,
    responses={
        409: problem(
            "Cannot take work",
            example(
                409,
                "no-routing-profile",
                "The agent has no routing profile, so no queues and no capacity.",
            ),
        )
    },
    tags=["agent desktop"],
)
async def set_my_presence(
    body: PresenceUpdate, request: Request, session: SessionDep, principal: AgentWork
) -> PresenceRead:
    """Go available, take a break (with a reason) or go offline. Available starts the
    heartbeat clock: send heartbeats (WebSocket or POST /v1/agent/heartbeat) within the
    grace period or be signed out of routing."""
    return await presence.set_status(
        session, principal.scope, _agent_id(principal), body, grace_seconds=_grace(request)
    )


@router.post("/v1/agent/heartbeat", tags=["agent desktop"])
async def heartbeat(request: Request, session: SessionDep, principal: AgentWork) -> dict[str, Any]:
    status_now = await presence.heartbeat(
        await raw(session), principal.scope, _agent_id(principal), _grace(request)
    )
    return {"status": status_now, "grace_seconds": _grace(request)}


@router.get(
    "/v1/agents/{agent_id}/presence",
    response_model=PresenceRead,
    responses={404: not_found("agent-not-found")},
    tags=["agents"],
)
async def agent_presence(
    agent_id: uuid.UUID, session: SessionDep, principal: RoutingRead
) -> PresenceRead:
    return await presence.read(await raw(session), principal.scope, agent_id)


@router.put(
    "/v1/agents/{agent_id}/presence",
    response_model=PresenceRead,
    responses={404: not_found("agent-not-found")},
    tags=["agents"],
)
async def set_agent_presence(
    agent_id: uuid.UUID,
    body: PresenceUpdate,
    request: Request,
    session: SessionDep,
    principal: AgentsWrite,
) -> PresenceRead:
    """A supervisor sets an agent's status (for example, offline at shift end)."""
    read = await presence.set_status(
        session, principal.scope, agent_id, body, grace_seconds=_grace(request)
    )
    audit(
        request, "agent.presence", "agent", agent_id, status=body.status, reason=body.break_reason
    )
    return read


@router.get(
    "/v1/agents/{agent_id}/routing",
    response_model=AgentRouting,
    responses={404: not_found("agent-not-found")},
    tags=["agents"],
)
async def agent_routing(
    agent_id: uuid.UUID, session: SessionDep, principal: RoutingRead
) -> AgentRouting:
    """Why this agent is or is not receiving work: status, capacity, queues served, and
    for each waiting contact whether they could take it."""
    return await explain.agent_routing(await raw(session), principal.scope, agent_id)


# ---------------------------------------------------------------------------- reservations


def _reservation_step(step: str) -> Callable[[_Endpoint], _Endpoint]:
    """The route of one step of an agent's reservation (accept, reject, complete, wrap-up):
    all answer the reservation, 404 when it is not theirs, 409 in the wrong state."""
    return router.post(
        f"/v1/reservations/{{reservation_id}}/{step}",
        response_model=ReservationRead,
        responses={404: RESERVATION_NOT_FOUND, 409: RESERVATION_STATE},
        tags=["agent desktop"],
    )


@router.get(
    "/v1/reservations/{reservation_id}",
    response_model=ReservationRead,
    responses={404: RESERVATION_NOT_FOUND},
    tags=["agent desktop"],
)
async def get_reservation(
    reservation_id: uuid.UUID, session: SessionDep, principal: AgentWork
) -> ReservationRead:
    return await reservations.read(session, principal.scope, reservation_id, _agent_id(principal))


@_reservation_step("accept")
async def accept(
    reservation_id: uuid.UUID, session: SessionDep, principal: AgentWork
) -> ReservationRead:
    """Take the offered contact: it moves to in progress."""
    return await reservations.accept(
        await raw(session), principal.scope, reservation_id, _agent_id(principal)
    )


@_reservation_step("reject")
async def reject(
    reservation_id: uuid.UUID, session: SessionDep, principal: AgentWork
) -> ReservationRead:
    """Decline the offer: the contact goes back to its original place in line."""
    return await reservations.reject(
        await raw(session), principal.scope, reservation_id, _agent_id(principal)
    )


@_reservation_step("complete")
async def complete(
    reservation_id: uuid.UUID, session: SessionDep, principal: AgentWork
) -> ReservationRead:
    """Handling is over: wrap-up starts (the queue's wrap-up timer)."""
    return await reservations.complete(
        session, principal.scope, reservation_id, _agent_id(principal)
    )


@_reservation_step("wrap-up")
async def finish_wrap_up(
    reservation_id: uuid.UUID,
    session: SessionDep,
    principal: AgentWork,
    body: WrapUpRequest | None = None,
) -> ReservationRead:
    """After-contact work is done (with an optional wrap-up code; the body may be left
    out): the work completes."""
    code = body.code if body is not None else None
    return await reservations.wrap_up(
        session, principal.scope, reservation_id, _agent_id(principal), code
    )
