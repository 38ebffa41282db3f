"""Writing in a conversation (REST): replies to the customer, internal notes, the typing
indicator and files for a reply."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response, status

from app.conversations import actions, uploads
from app.conversations.actions import Actor
from app.conversations.agent_schemas import NoteCreate, ReplyCreate, TypingRead, TypingRequest
from app.conversations.api import ConversationsWrite, outbound
from app.conversations.responses import (
    FORBIDDEN,
    NOT_FOUND,
    REPLY_INVALID,
    REPLY_REFUSED,
    UPLOAD_REFUSED,
    WRONG_STATE,
)
from app.conversations.schemas import MessageRead
from app.db.engine import SessionDep
from app.idempotency.service import IdempotencyDep
from app.routing.connection import raw
from app.webchat.schemas import UploadCreate, UploadGrant

router = APIRouter(prefix="/v1/conversations", tags=["conversations"])


@router.post(
    "/{conversation_id}/messages",
    status_code=status.HTTP_201_CREATED,
    response_model=MessageRead,
    responses={
        403: FORBIDDEN,
        404: NOT_FOUND,
        409: REPLY_REFUSED,
        422: REPLY_INVALID,
    },
)
async def post_message(
    conversation_id: uuid.UUID,
    body: ReplyCreate,
    request: Request,
    session: SessionDep,
    principal: ConversationsWrite,
    idem: IdempotencyDep,
) -> Response:
    """The owning agent replies to the customer. ``channel_id`` switches channel (the
    conversation stays one; later replies go there). Web chat messages are ``sent`` at
    once; the others are ``queued`` and delivered after the commit.

    WhatsApp and Messenger (Meta) take free text only within 24 hours of the customer's
    last message on the channel (409 ``service-window-closed``). After that, WhatsApp
    takes an approved ``template`` instead of ``text`` (Meta Cloud API channels, or
    Twilio channels that declare the template's Content SID in ``config.templates``);
    on Messenger an agent may answer for 7 days (sent with the HUMAN_AGENT tag)."""
    if (replay := await idem.replay()) is not None:
        return replay
    actor = Actor.of(principal)
    read = await actions.reply(session, actor, conversation_id, body, outbound(request))
    return await idem.respond(201, read)


@router.post(
    "/{conversation_id}/notes",
    status_code=status.HTTP_201_CREATED,
    response_model=MessageRead,
    responses={403: FORBIDDEN, 404: NOT_FOUND},
)
async def post_note(
    conversation_id: uuid.UUID,
    body: NoteCreate,
    session: SessionDep,
    principal: ConversationsWrite,
    idem: IdempotencyDep,
) -> Response:
    """An internal note: the owner, consulted agents, owners and admins write them;
    agents and supervisors read them; the customer never sees them."""
    if (replay := await idem.replay()) is not None:
        return replay
    read = await actions.note(session, Actor.of(principal), conversation_id, body)
    return await idem.respond(201, read)


@router.post(
    "/{conversation_id}/typing",
    response_model=TypingRead,
    responses={403: FORBIDDEN, 404: NOT_FOUND},
)
async def post_typing(
    conversation_id: uuid.UUID,
    body: TypingRequest,
    session: SessionDep,
    principal: ConversationsWrite,
) -> TypingRead:
    """The owner's typing indicator reaches the customer; a consulted agent's only
    colleagues. One every two seconds at most (``sent: false`` for the rest)."""
    return await actions.typing(session, Actor.of(principal), conversation_id, body)


@router.post(
    "/{conversation_id}/uploads",
    status_code=status.HTTP_201_CREATED,
    response_model=UploadGrant,
    responses={
        403: FORBIDDEN,
        404: NOT_FOUND,
        409: WRONG_STATE,
        422: UPLOAD_REFUSED,
    },
)
async def post_upload(
    conversation_id: uuid.UUID,
    body: UploadCreate,
    request: Request,
    session: SessionDep,
    principal: ConversationsWrite,
) -> UploadGrant:
    """A file for the owner's next reply: upload it with the ticket (straight to the
    store), then name ``attachment_id`` in ``attachment_ids`` of the reply; the reply
    checks the uploaded file's size and type."""
    state = request.app.state
    return await uploads.new_upload(
        await raw(session),
        Actor.of(principal),
        state.object_store,
        state.settings,
        conversation_id,
        body,
    )
