"""Handing over and closing a conversation (REST): transfer, consult a colleague,
resolve, set pending, reopen; and supervisors' silent monitoring."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from app.audit.service import audit
from app.auth.principal import Principal
from app.conversations import actions
from app.conversations.actions import Actor
from app.conversations.agent_schemas import (
    ConsultRequest,
    ConversationDetail,
    ResolveRequest,
    TransferRequest,
)
from app.conversations.api import (
    ConversationsMonitor,
    ConversationsWrite,
    detail_response,
    once,
    respond,
)
from app.conversations.responses import CHANGE, FORBIDDEN, NOT_FOUND
from app.core.concurrency import IfMatchDep
from app.core.openapi import example, problem
from app.db.engine import SessionDep
from app.idempotency.service import IdempotencyDep

router = APIRouter(prefix="/v1/conversations", tags=["conversations"])


@router.post(
    "/{conversation_id}/transfer",
    response_model=ConversationDetail,
    responses=CHANGE
    | {
        422: problem(
            "The target is not usable: names the field",
            example(
                422,
                "channel-not-taken",
                "body.queue_id: the queue takes voice, not chat",
                field="body.queue_id",
            ),
            example(
                422,
                "agent-not-routable",
                "body.agent_id: the agent's routing profile serves no queue taking chat",
                field="body.agent_id",
            ),
        )
    },
)
async def post_transfer(
    conversation_id: uuid.UUID,
    body: TransferRequest,
    request: Request,
    session: SessionDep,
    principal: ConversationsWrite,
    idem: IdempotencyDep,
    if_match: IfMatchDep,
) -> Response:
    """Transfer to a queue or an agent. ``cold``: the current agent's work completes now
    and the conversation waits in line. ``warm``: the current agent keeps the customer
    until the new agent accepts the offer (which carries ``note``); then the first
    agent's work completes. An agent transfer routes through a queue the agent serves,
    with them as preferred and sticky agent (docs/decisions/0015)."""
    if (replay := await idem.replay()) is not None:
        return replay
    read = await actions.transfer(session, Actor.of(principal), conversation_id, body, if_match)
    audit(
        request,
        "conversation.transfer",
        "conversation",
        conversation_id,
        mode=body.mode,
        queue_id=body.queue_id and str(body.queue_id),
        agent_id=body.agent_id and str(body.agent_id),
    )
    return await respond(idem, read)


@router.delete(
    "/{conversation_id}/transfer",
    response_model=ConversationDetail,
    responses={
        403: FORBIDDEN,
        404: NOT_FOUND,
        409: problem(
            "No warm transfer is waiting",
            example(409, "no-transfer-pending", "No transfer is waiting."),
        ),
    },
)
async def cancel_transfer(
    conversation_id: uuid.UUID, session: SessionDep, principal: ConversationsWrite
) -> JSONResponse:
    """Withdraw a warm transfer nobody has accepted yet."""
    actor = Actor.of(principal)
    return detail_response(await actions.cancel_transfer(session, actor, conversation_id))


@router.post(
    "/{conversation_id}/consult",
    response_model=ConversationDetail,
    responses={
        403: FORBIDDEN,
        404: NOT_FOUND,
        409: problem(
            "Already taking part",
            example(
                409,
                "already-participant",
                "The agent takes part in the conversation already.",
                field="body.agent_id",
            ),
        ),
    },
)
async def post_consult(
    conversation_id: uuid.UUID,
    body: ConsultRequest,
    session: SessionDep,
    principal: ConversationsWrite,
    idem: IdempotencyDep,
) -> Response:
    """Invite a colleague to consult: they read everything and write notes, never to
    the customer. The invitation reaches their desktop stream."""
    actor = Actor.of(principal)
    return await once(idem, lambda: actions.consult(session, actor, conversation_id, body))


@router.post(
    "/{conversation_id}/consult/accept",
    response_model=ConversationDetail,
    responses={403: FORBIDDEN, 404: NOT_FOUND},
)
async def post_consult_accept(
    conversation_id: uuid.UUID, session: SessionDep, principal: ConversationsWrite
) -> JSONResponse:
    """The invited agent joins as a consultant."""
    actor = Actor.of(principal)
    return detail_response(await actions.consult_accept(session, actor, conversation_id))


@router.post(
    "/{conversation_id}/consult/leave",
    response_model=ConversationDetail,
    responses={403: FORBIDDEN, 404: NOT_FOUND},
)
async def post_consult_leave(
    conversation_id: uuid.UUID, session: SessionDep, principal: ConversationsWrite
) -> JSONResponse:
    """A consultant leaves (or declines the invitation)."""
    actor = Actor.of(principal)
    return detail_response(await actions.consult_leave(session, actor, conversation_id))


# ---------------------------------------------------------------------------- closing


@router.post(
    "/{conversation_id}/resolve",
    response_model=ConversationDetail,
    responses=CHANGE
    | {
        422: problem(
            "Not one of the queue's wrap-up codes",
            example(
                422,
                "validation-failed",
                "body.wrap_up_code: not one of the queue's wrap-up codes (Resolved, Refund)",
                field="body.wrap_up_code",
            ),
        )
    },
)
async def post_resolve(
    conversation_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    principal: ConversationsWrite,
    idem: IdempotencyDep,
    if_match: IfMatchDep,
    body: ResolveRequest | None = None,
) -> Response:
    """Resolve: the owner's work completes with the disposition (``wrap_up_code``, one
    of the queue's codes), everyone leaves. The customer writing again reopens it."""
    if (replay := await idem.replay()) is not None:
        return replay
    data = body or ResolveRequest()
    read = await actions.resolve(session, Actor.of(principal), conversation_id, data, if_match)
    audit(
        request,
        "conversation.resolve",
        "conversation",
        conversation_id,
        wrap_up_code=read.wrap_up_code,
    )
    return await respond(idem, read)


@router.post(
    "/{conversation_id}/pending",
    response_model=ConversationDetail,
    responses=CHANGE,
)
async def post_pending(
    conversation_id: uuid.UUID,
    session: SessionDep,
    principal: ConversationsWrite,
    idem: IdempotencyDep,
    if_match: IfMatchDep,
) -> Response:
    """Done for now, waiting on the customer: the agent's work completes (handled
    minutes end; the queue's wrap-up follows); the customer's next message routes the
    conversation again (to the same agent first when the queue is sticky)."""
    actor = Actor.of(principal)
    return await once(idem, lambda: actions.pending(session, actor, conversation_id, if_match))


@router.post(
    "/{conversation_id}/reopen",
    response_model=ConversationDetail,
    responses=CHANGE,
)
async def post_reopen(
    conversation_id: uuid.UUID,
    session: SessionDep,
    principal: ConversationsWrite,
    idem: IdempotencyDep,
    if_match: IfMatchDep,
) -> Response:
    """Follow up on a resolved or pending conversation: it is routed again, to the agent
    who reopens it first (preferred and sticky). Reply once the offer is accepted."""
    actor = Actor.of(principal)
    return await once(idem, lambda: actions.reopen(session, actor, conversation_id, if_match))


# ---------------------------------------------------------------------------- monitor


async def _monitor(
    request: Request, session: SessionDep, principal: Principal, cid: uuid.UUID, *, stop: bool
) -> JSONResponse:
    read = await actions.monitor(session, Actor.of(principal), cid, stop=stop)
    action = "conversation.monitor.stop" if stop else "conversation.monitor"
    audit(request, action, "conversation", cid)
    return detail_response(read)


@router.post(
    "/{conversation_id}/monitor",
    response_model=ConversationDetail,
    responses={403: FORBIDDEN, 404: NOT_FOUND},
)
async def post_monitor(
    conversation_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    principal: ConversationsMonitor,
) -> JSONResponse:
    """Watch silently: the conversation's events reach your stream (GET /v1/agent/stream);
    you cannot write while monitoring (403 ``read-only-participant``)."""
    return await _monitor(request, session, principal, conversation_id, stop=False)


@router.delete(
    "/{conversation_id}/monitor",
    response_model=ConversationDetail,
    responses={403: FORBIDDEN, 404: NOT_FOUND},
)
async def stop_monitor(
    conversation_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    principal: ConversationsMonitor,
) -> JSONResponse:
    """Stop watching (nothing to do when you were not watching)."""
    return await _monitor(request, session, principal, conversation_id, stop=True)
