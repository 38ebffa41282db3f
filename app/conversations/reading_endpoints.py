"""Reading conversations (REST): the list, one conversation, its messages, event log,
the agent's context and the conversation's files."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, status
from fastapi.responses import JSONResponse, RedirectResponse

from app.conversations import access, uploads
from app.conversations import repository as repo
from app.conversations.actions import Actor
from app.conversations.agent_schemas import ConversationDetail, ConversationEventRead, EventPage
from app.conversations.api import ConversationsRead, detail_response
from app.conversations.context import build_context
from app.conversations.responses import ATTACHMENT_NOT_FOUND, NOT_FOUND, READ_FORBIDDEN
from app.conversations.schemas import (
    ConversationRead,
    ConversationState,
    MessageRead,
    conversation_read,
    message_read,
)
from app.core.errors import InvalidInput
from app.core.openapi import WITH_ETAG
from app.core.pagination import Page, PageParams, page_of, page_params
from app.db.engine import SessionDep
from app.routing.connection import raw
from app.routing.snapshots import decode_json

router = APIRouter(prefix="/v1/conversations", tags=["conversations"])


@router.get("", response_model=Page[ConversationRead])
async def list_conversations(
    session: SessionDep,
    principal: ConversationsRead,
    page: Annotated[PageParams, Depends(page_params)],
    state: ConversationState | None = None,
    customer_id: uuid.UUID | None = None,
    mine: Annotated[
        bool, Query(description="Only those you take part in now (owner, consult, monitor)")
    ] = False,
) -> Page[ConversationRead]:
    """Newest first. Agents see the conversations they take or took part in (or hold an
    offer of); supervisors, admins and owners see all of the tenant's."""
    actor = Actor.of(principal)
    if mine and actor.user_id is None:
        raise InvalidInput("query.mine: an API key takes part in nothing", field="query.mine")
    if actor.role == "agent" and actor.user_id is None:
        return Page(items=[])  # an agent-role API key takes part in nothing
    rows = await repo.list_page(
        await raw(session),
        principal.scope,
        limit=page.limit,
        after_id=page.after_id,
        state=state,
        customer_id=customer_id,
        live_for=actor.user_id if mine else None,
        seen_by=actor.user_id if actor.role == "agent" else None,
    )
    return page_of(rows, page.limit, conversation_read)


@router.get(
    "/{conversation_id}",
    response_model=ConversationDetail,
    responses={200: WITH_ETAG, 403: READ_FORBIDDEN, 404: NOT_FOUND},
)
async def get_conversation(
    conversation_id: uuid.UUID, session: SessionDep, principal: ConversationsRead
) -> JSONResponse:
    """The conversation, who takes part, and a warm transfer in flight."""
    conn = await raw(session)
    conv = await access.readable(conn, Actor.of(principal), conversation_id)
    return detail_response(await access.detail(conn, principal.scope, conversation_id, row=conv))


@router.get(
    "/{conversation_id}/messages",
    response_model=Page[MessageRead],
    responses={403: READ_FORBIDDEN, 404: NOT_FOUND},
)
async def list_messages(
    conversation_id: uuid.UUID,
    session: SessionDep,
    principal: ConversationsRead,
    page: Annotated[PageParams, Depends(page_params)],
) -> Page[MessageRead]:
    """Oldest first, across channels; internal notes included (``direction: internal``)."""
    conn = await raw(session)
    await access.readable(conn, Actor.of(principal), conversation_id)
    rows = await repo.messages_page(
        conn, principal.scope, conversation_id, limit=page.limit, after_id=page.after_id
    )
    return page_of(rows, page.limit, message_read, key=lambda r: r["id"])


@router.get(
    "/{conversation_id}/events",
    response_model=EventPage,
    responses={403: READ_FORBIDDEN, 404: NOT_FOUND},
)
async def list_events(
    conversation_id: uuid.UUID,
    session: SessionDep,
    principal: ConversationsRead,
    since: Annotated[int, Query(ge=0, lt=2**63, description="Events after this id")] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> EventPage:
    """The conversation's event log after ``since`` (both audiences), oldest first."""
    conn = await raw(session)
    await access.readable(conn, Actor.of(principal), conversation_id)
    rows = await repo.events_since(conn, principal.scope, conversation_id, since, limit)
    items = [
        ConversationEventRead.model_validate(dict(r) | {"payload": decode_json(r["payload"])})
        for r in rows
    ]
    if items:
        latest = items[-1].id
    else:  # nothing after ``since``: the log's newest id (lower, when since ran ahead)
        latest = await repo.latest_event_id(conn, principal.scope, conversation_id)
    return EventPage(items=items, latest_event_id=latest)


@router.get(
    "/{conversation_id}/context",
    responses={403: READ_FORBIDDEN, 404: NOT_FOUND},
)
async def get_context(
    conversation_id: uuid.UUID, session: SessionDep, principal: ConversationsRead
) -> dict[str, Any]:
    """What the agent's offer carries: customer profile, identities and consents,
    recent interactions across conversations, page trail, the contact flow's answers,
    a warm transfer's note and the last messages."""
    conn = await raw(session)
    actor = Actor.of(principal)
    conv = await access.readable(conn, actor, conversation_id)
    contact_id = conv["contact_id"]
    if actor.agent_id is not None:
        held = await repo.live_reservation(conn, principal.scope, conversation_id, actor.agent_id)
        contact_id = held["contact_id"] if held is not None else contact_id
    found = await repo.contact(conn, principal.scope, contact_id)
    attributes = decode_json(found["attributes"]) if found is not None else {}
    return await build_context(conn, principal.scope, conversation_id, attributes)


@router.get(
    "/{conversation_id}/attachments/{attachment_id}",
    status_code=status.HTTP_302_FOUND,
    response_class=RedirectResponse,
    responses={
        302: {"description": "To a short-lived download URL"},
        403: READ_FORBIDDEN,
        404: ATTACHMENT_NOT_FOUND,
        409: uploads.ATTACHMENT_CHANGED,
    },
)
async def download_attachment(
    conversation_id: uuid.UUID,
    attachment_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    principal: ConversationsRead,
) -> RedirectResponse:
    """A file of the conversation (sent by the customer or an agent)."""
    state = request.app.state
    url = await uploads.download_url(
        await raw(session),
        Actor.of(principal),
        state.object_store,
        state.settings,
        conversation_id,
        attachment_id,
    )
    return RedirectResponse(url, status_code=302, headers={"Cache-Control": "no-store"})
