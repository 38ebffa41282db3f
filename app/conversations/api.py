"""What the conversations REST endpoints share: their scopes and auth aliases, and how a
change answers (the conversation with its ETag; a repeated Idempotency-Key replays it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Request, Response
from fastapi.responses import JSONResponse

from app.auth.principal import Principal, require
from app.auth.scopes import register
from app.conversations.actions import Outbound
from app.conversations.agent_schemas import ConversationDetail
from app.core.concurrency import etag
from app.idempotency.service import Idempotency

register(
    "conversations:read",
    "Read conversations, their messages, events and context",
    ("owner", "admin", "supervisor", "agent"),
)
register(
    "conversations:write",
    "Act on conversations: reply (agents), notes, transfer, consult, resolve",
    ("owner", "admin", "agent"),
)
register(
    "conversations:monitor",
    "Watch conversations live, read-only",
    ("owner", "admin", "supervisor"),
)

ConversationsRead = Annotated[Principal, require("conversations:read")]
ConversationsWrite = Annotated[Principal, require("conversations:write")]
ConversationsMonitor = Annotated[Principal, require("conversations:monitor")]


def outbound(request: Request) -> Outbound:
    """What sending a message needs from the app: the object store, settings, sessions."""
    state = request.app.state
    return Outbound(state.object_store, state.settings, state.session_factory)


def detail_response(read: ConversationDetail) -> JSONResponse:
    return JSONResponse(read.model_dump(mode="json"), headers={"ETag": etag(read.version)})


async def respond(idem: Idempotency, read: ConversationDetail) -> Response:
    """The conversation with its ETag, kept for a retry with the same Idempotency-Key."""
    return await idem.respond(200, read, {"ETag": etag(read.version)})


async def once(idem: Idempotency, change: Callable[[], Awaitable[ConversationDetail]]) -> Response:
    """``change()`` answered with the conversation, or the replay of the same request."""
    if (replay := await idem.replay()) is not None:
        return replay
    return await respond(idem, await change())
