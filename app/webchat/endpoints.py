"""The public widget API (``/v1/widget``): what the embedded chat widget calls from a
visitor's browser. Authentication and CORS: app/webchat/auth.py, app/webchat/cors.py;
abuse limits: app/webchat/limits.py (counted by app/core/abuse.py); the live stream:
app/webchat/stream.py."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.responses import RedirectResponse

from app.config import Settings
from app.conversations.uploads import ATTACHMENT_CHANGED
from app.core.openapi import example, problem
from app.core.pagination import PageParams, page_params
from app.db.engine import SessionDep
from app.routing.connection import raw
from app.storage.base import ObjectStore
from app.webchat import limits, service, visits
from app.webchat.auth import (
    VisitorDep,
    VisitorHoldingDep,
    allowed_origins,
    open_session,
    widget_key_header,
)
from app.webchat.schemas import (
    CallbackCreate,
    CallbackRequested,
    ChatStarted,
    ConversationStart,
    Identified,
    IdentifyBody,
    InvitationAccept,
    InvitationAccepted,
    MessageCreate,
    MessagePage,
    MessagePosted,
    PageViewCreate,
    PageViewRecorded,
    ReadReceipt,
    ReadResult,
    SessionCreate,
    SessionRead,
    UploadCreate,
    UploadGrant,
    WidgetConversation,
)
from app.webchat.stream import router as stream_router
from app.webchat.visitor import Visitor

router = APIRouter(prefix="/v1/widget", tags=["web chat widget"])
router.include_router(stream_router)

_401 = problem(
    "No visitor token, or one that is invalid or expired",
    example(401, "visitor-token-required", "Send 'Authorization: Bearer <visitor token>'."),
    example(401, "invalid-visitor-token", "The visitor token is invalid or expired."),
)
_403 = problem(
    "The page's origin may not use this widget, or the tenant is suspended",
    example(
        403,
        "origin-not-allowed",
        "This page's origin may not use this widget.",
        field="header.Origin",
    ),
    example(403, "tenant-suspended", "This tenant is suspended."),
)
_404_WIDGET = problem(
    "No such widget key, or the channel is disabled",
    example(404, "widget-not-found", "No such widget, or it is disabled."),
)
_404_CONVERSATION = problem(
    "Not one of this visitor's conversations",
    example(404, "conversation-not-found", "No such conversation."),
    example(404, "widget-not-found", "No such widget, or it is disabled."),
)
_429 = problem(
    "Too many requests from this visitor or address",
    example(
        429,
        "rate-limited",
        "Too many message requests; try again in 42 s.",
        title="Too many requests",
        retry_after=42,
    ),
)
_VISITOR_ERRORS: dict[int | str, dict[str, Any]] = {
    401: _401,
    403: _403,
    404: _404_CONVERSATION,
    429: _429,
}


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _store(request: Request) -> ObjectStore:
    store: ObjectStore = request.app.state.object_store
    return store


async def _visitor_limit(request: Request, visitor: Visitor, limit: limits.Limit) -> None:
    await limits.by_visitor(request.app.state.limits_factory, visitor, limit)


def _opening_limit(request: Request, visitor: Visitor) -> Callable[[], Awaitable[None]]:
    """The visitor's conversations limit, counted only when a new one is about to open."""

    async def before_open() -> None:
        await _visitor_limit(request, visitor, limits.conversations(_settings(request)))

    return before_open


@router.post(
    "/sessions",
    status_code=status.HTTP_201_CREATED,
    response_model=SessionRead,
    summary="Start (or resume) a visitor's widget session",
    responses={
        401: problem(
            "No widget key",
            example(
                401,
                "widget-key-required",
                "Send the channel's widget key in the X-Widget-Key header.",
                field="header.X-Widget-Key",
            ),
        ),
        403: _403,
        404: _404_WIDGET,
        429: _429,
    },
)
async def create_session(
    request: Request,
    session: SessionDep,
    key: Annotated[str | None, Depends(widget_key_header)],
    body: SessionCreate | None = None,
) -> SessionRead:
    """The widget's first call from a page: ``X-Widget-Key`` names the channel, the
    page's ``Origin`` must be one of its allowed origins. Returns a visitor token for the
    other calls (``Authorization: Bearer``), the widget's settings and the visitor's
    open conversation. Send an earlier ``visitor_token`` to stay the same visitor."""
    address = request.client.host if request.client else "unknown"
    limit = limits.sessions(_settings(request))
    await limits.by_address(request.app.state.limits_factory, address, limit)
    return await open_session(request, session, key, body or SessionCreate())


@router.post(
    "/identify",
    response_model=Identified,
    summary="The pre-chat form: the visitor's name and email",
    responses=_VISITOR_ERRORS,
)
async def identify(visitor: VisitorDep, session: SessionDep, body: IdentifyBody) -> Identified:
    """Sets the visitor's display name; an email address nobody has becomes one of
    their (unverified) identities; one that belongs to another customer is not merged
    but kept as an unverified claim (``email.status`` = ``claimed``)."""
    return await visits.identify(await raw(session), visitor, body)


@router.post(
    "/conversations",
    status_code=status.HTTP_201_CREATED,
    response_model=ChatStarted,
    summary="Start a chat",
    responses=_VISITOR_ERRORS,
)
async def start_chat(
    request: Request,
    response: Response,
    visitor: VisitorDep,
    session: SessionDep,
    body: ConversationStart,
) -> ChatStarted:
    """The visitor's first message: opens a conversation, routed to the channel's queue
    (201), or continues the visitor's open one (200)."""
    await _visitor_limit(request, visitor, limits.messages(_settings(request)))
    started, opened = await service.start_chat(
        session,
        visitor,
        _store(request),
        text=body.text,
        client_message_id=body.client_message_id,
        attachment_ids=body.attachment_ids,
        before_open=_opening_limit(request, visitor),
    )
    if not opened:
        response.status_code = status.HTTP_200_OK
    return started


@router.get(
    "/conversations/{conversation_id}",
    response_model=WidgetConversation,
    summary="A conversation's state, place in line and agent",
    responses=_VISITOR_ERRORS,
)
async def get_conversation(
    conversation_id: uuid.UUID, visitor: VisitorDep, session: SessionDep
) -> WidgetConversation:
    conn = await raw(session)
    row = await service.owned(conn, visitor, conversation_id)
    return await service.conversation_view(conn, visitor.scope, row)


@router.get(
    "/conversations/{conversation_id}/messages",
    response_model=MessagePage,
    summary="A conversation's messages, newest first",
    responses=_VISITOR_ERRORS,
)
async def list_messages(
    conversation_id: uuid.UUID,
    visitor: VisitorDep,
    session: SessionDep,
    page: Annotated[PageParams, Depends(page_params)],
) -> MessagePage:
    return await service.list_messages(await raw(session), visitor, conversation_id, page)


@router.post(
    "/conversations/{conversation_id}/messages",
    status_code=status.HTTP_201_CREATED,
    response_model=MessagePosted,
    summary="Send a message",
    responses=_VISITOR_ERRORS,
)
async def post_message(
    request: Request,
    response: Response,
    conversation_id: uuid.UUID,
    holding: VisitorHoldingDep,
    session: SessionDep,
    body: MessageCreate,
) -> MessagePosted:
    """A resend with the same ``client_message_id`` answers the first message (200,
    ``duplicate``: true) and adds nothing."""
    visitor = holding.visitor
    await _visitor_limit(request, visitor, limits.messages(_settings(request)))
    posted = await service.post_message(
        session,
        visitor,
        _store(request),
        conversation_id,
        text=body.text,
        client_message_id=body.client_message_id,
        attachment_ids=body.attachment_ids,
        # Held since authentication when it is the visitor's; else post_message looks
        # again and answers 404.
        locked=holding.held == conversation_id,
    )
    if posted.duplicate:
        response.status_code = status.HTTP_200_OK
    return posted


@router.post(
    "/conversations/{conversation_id}/read",
    response_model=ReadResult,
    summary="Read receipt: the agents' messages up to this one were read",
    responses=_VISITOR_ERRORS,
)
async def mark_read(
    conversation_id: uuid.UUID, visitor: VisitorDep, session: SessionDep, body: ReadReceipt
) -> ReadResult:
    count = await service.mark_read(await raw(session), visitor, conversation_id, body.message_id)
    return ReadResult(marked_read=count)


@router.post(
    "/conversations/{conversation_id}/end",
    response_model=WidgetConversation,
    summary="The visitor closes the chat",
    responses=_VISITOR_ERRORS,
)
async def end_chat(
    conversation_id: uuid.UUID, visitor: VisitorDep, session: SessionDep
) -> WidgetConversation:
    """Still waiting: the chat leaves the line (abandoned) and is resolved. With an
    agent: the agent is told the customer left and wraps up. Ended already: unchanged."""
    return await service.end_chat(session, visitor, conversation_id)


@router.post(
    "/conversations/{conversation_id}/attachments",
    status_code=status.HTTP_201_CREATED,
    response_model=UploadGrant,
    summary="Upload a file: a presigned upload ticket",
    responses=_VISITOR_ERRORS,
)
async def new_upload(
    request: Request,
    conversation_id: uuid.UUID,
    visitor: VisitorDep,
    session: SessionDep,
    body: UploadCreate,
) -> UploadGrant:
    """Upload the file with the ticket (straight to storage), then name its
    ``attachment_id`` in a message's ``attachment_ids``."""
    settings = _settings(request)
    await _visitor_limit(request, visitor, limits.uploads(settings))
    return await service.new_upload(
        await raw(session), visitor, _store(request), settings, conversation_id, body
    )


@router.get(
    "/attachments/{attachment_id}",
    status_code=status.HTTP_302_FOUND,
    response_class=RedirectResponse,
    summary="Download a file of the visitor's conversation",
    responses={
        302: {
            "description": "To a short-lived presigned download",
            "headers": {"Location": {"schema": {"type": "string"}}},
        },
        401: _401,
        403: _403,
        404: problem(
            "Not a file of this visitor's conversations",
            example(404, "attachment-not-found", "No such attachment."),
        ),
        409: ATTACHMENT_CHANGED,
    },
)
async def download(
    request: Request, attachment_id: uuid.UUID, visitor: VisitorDep, session: SessionDep
) -> RedirectResponse:
    url = await service.download_url(
        await raw(session), visitor, _store(request), _settings(request), attachment_id
    )
    return RedirectResponse(url, status_code=302, headers={"Cache-Control": "no-store"})


@router.post(
    "/page-views",
    status_code=status.HTTP_201_CREATED,
    response_model=PageViewRecorded,
    summary="The visitor opened a page",
    responses=_VISITOR_ERRORS,
)
async def page_view(
    request: Request, visitor: VisitorDep, session: SessionDep, body: PageViewCreate
) -> PageViewRecorded:
    """Context for agents and input for proactive rules; ``invitation`` is set when a
    rule invites the visitor to chat or offers a callback."""
    await _visitor_limit(request, visitor, limits.page_views(_settings(request)))
    return await visits.record_page_view(session, visitor, allowed_origins(visitor.channel), body)


@router.post(
    "/invitations/{decision_id}/accept",
    status_code=status.HTTP_201_CREATED,
    response_model=InvitationAccepted,
    summary="Take up a chat invitation",
    responses={
        **_VISITOR_ERRORS,
        404: problem(
            "Not an invitation made to this visitor",
            example(404, "invitation-not-found", "No such invitation for this visitor."),
        ),
        409: problem(
            "The invitation offers a callback, or has lapsed",
            example(
                409,
                "not-a-chat-invitation",
                "This invitation offers a callback.",
                field="path.decision_id",
            ),
            example(409, "invitation-expired", "The invitation has lapsed."),
        ),
    },
)
async def accept_invitation(
    request: Request,
    response: Response,
    decision_id: uuid.UUID,
    visitor: VisitorDep,
    session: SessionDep,
    body: InvitationAccept | None = None,
) -> InvitationAccepted:
    text = body.text if body is not None else None
    if text:
        await _visitor_limit(request, visitor, limits.messages(_settings(request)))
    accepted, opened = await visits.accept_invitation(
        session, visitor, _store(request), decision_id, text, _opening_limit(request, visitor)
    )
    if not opened:
        response.status_code = status.HTTP_200_OK
    return accepted


@router.post(
    "/callbacks",
    status_code=status.HTTP_201_CREATED,
    response_model=CallbackRequested,
    summary="Take up a callback offer",
    responses={
        **_VISITOR_ERRORS,
        409: problem(
            "The channel's queue takes no calls",
            example(
                409,
                "callback-unavailable",
                "This chat channel takes no callbacks: its queue must also take voice.",
            ),
        ),
    },
)
async def request_callback(
    request: Request, visitor: VisitorDep, session: SessionDep, body: CallbackCreate
) -> CallbackRequested:
    await _visitor_limit(request, visitor, limits.conversations(_settings(request)))
    return await visits.request_callback(session, visitor, body.phone, body.decision_id)
