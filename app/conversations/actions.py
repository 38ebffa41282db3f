"""What agents (and their supervisors) do on a conversation: reply, write notes, type,
consult a colleague, monitor; transfers are in ``app.conversations.transfers``, resolve,
pending and reopen in ``app.conversations.closing``; who may do what in
``app.conversations.access``.

REST (``app.conversations.endpoints``) and the agent WebSocket (``conversation.*``
commands, :func:`dispatch`) call the same functions. Every change runs in the caller's
transaction and locks the conversation first (see ``app.conversations.hooks``).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from app.conversations import hooks
from app.conversations import repository as repo
from app.conversations.access import (
    Actor,
    Outbound,
    active_agent,
    actor_name,
    detail,
    in_state,
    load,
    owner_or_manager,
    writable,
)
from app.conversations.agent_schemas import (
    ConsultRequest,
    ConversationDetail,
    NoteCreate,
    ReplyCreate,
    ResolveRequest,
    TransferRequest,
    TypingRead,
    TypingRequest,
)
from app.conversations.closing import pending, reopen, resolve
from app.conversations.events import post_event
from app.conversations.outbound import send_message
from app.conversations.schemas import MessageRead, message_read
from app.conversations.service import preview
from app.conversations.transfers import cancel_transfer, transfer
from app.core.concurrency import IfMatch
from app.core.errors import Conflict, Forbidden, SwitchboardError
from app.db.base import utcnow, uuid7
from app.routing.connection import raw

TYPING_EVERY = timedelta(seconds=2)

__all__ = ["Actor", "Outbound", "cancel_transfer", "pending", "reopen", "resolve", "transfer"]


# ---------------------------------------------------------------------------- messages


async def reply(
    session: AsyncSession,
    actor: Actor,
    conversation_id: uuid.UUID,
    data: ReplyCreate,
    out: Outbound,
) -> MessageRead:
    """The owner answers the customer, on the conversation's channel or another one of
    the tenant's (switching channel keeps the conversation: chat -> email), with text or,
    on WhatsApp, an approved template. A resolved conversation takes no reply: reopen it
    first (409 ``conversation-resolved``)."""
    conn = await raw(session)
    conv, me = await load(conn, actor, conversation_id)
    agent, scope = actor.agent_id, actor.scope
    if me is None and agent and await repo.ever_took_part(conn, scope, conversation_id, agent):
        in_state(conv, "assigned")  # a former owner following up: reopen first
    owner_or_manager(actor, me, managers=False)
    in_state(conv, "assigned")
    return await send_message(
        session,
        actor.scope,
        conversation_id=conversation_id,
        text=data.body,
        sender_kind="agent",
        agent_id=actor.agent_id,
        store=out.store,
        settings=out.settings,
        factory=out.factory,
        channel_id=data.channel_id,
        attachment_ids=data.attachment_ids,
        template=data.template,
    )


async def note(
    session: AsyncSession, actor: Actor, conversation_id: uuid.UUID, data: NoteCreate
) -> MessageRead:
    """An internal note (agents only; never on the customer's stream)."""
    conn = await raw(session)
    conv, me = await load(conn, actor, conversation_id)
    writable(me)
    taking_part = me is not None and me["role"] in ("owner", "consult") and me["state"] == "active"
    if not taking_part and not actor.manager:
        if me is not None and me["state"] == "invited":
            raise Forbidden("Accept the consult invitation first.", code="consult-not-accepted")
        raise Forbidden("You do not take part in this conversation.", code="not-a-participant")
    now = utcnow()
    message_id = uuid7()
    await conn.execute(
        """
        INSERT INTO messages (tenant_id, id, conversation_id, customer_id, direction,
            sender_kind, agent_id, channel, channel_id, body, attachments, status, attempts,
            email_references, created_at, sent_at)
        VALUES ($1, $2, $3, $4, 'internal', $5, $6, $7, NULL, $8, '[]'::jsonb, 'sent', 0,
                '[]'::jsonb, $9, $9)
        """,
        actor.scope.tenant_id,
        message_id,
        conversation_id,
        conv["customer_id"],
        "agent" if actor.user_id is not None else "system",
        actor.user_id,
        conv["channel"],
        data.text,
        now,
    )
    await repo.timeline(
        conn,
        actor.scope,
        conv,
        "note",
        at=now,
        ref_id=message_id,
        summary={"text": preview(data.text), "by": await actor_name(conn, actor)},
    )
    read = message_read(await repo.message(conn, actor.scope, message_id))
    await post_event(
        conn,
        actor.scope,
        conversation_id,
        "message.created",
        {"message": read.model_dump(mode="json")},
        audience="agents",
    )
    return read


async def typing(
    session: AsyncSession, actor: Actor, conversation_id: uuid.UUID, data: TypingRequest
) -> TypingRead:
    """The owner's typing shows to the customer; a consulted agent's to colleagues only.
    At most one "typing" every two seconds per participant (the rest are dropped)."""
    conn = await raw(session)
    _, me = await load(conn, actor, conversation_id, lock=False)
    writable(me)
    if me is None or me["state"] != "active" or me["role"] not in ("owner", "consult"):
        raise Forbidden("You do not take part in this conversation.", code="not-a-participant")
    if data.typing:
        last = await repo.last_typing_at(conn, actor.scope, conversation_id, me["id"])
        if last is not None and utcnow() - last < TYPING_EVERY:
            return TypingRead(sent=False)
    await post_event(
        conn,
        actor.scope,
        conversation_id,
        "typing",
        {"participant_id": str(me["id"]), "name": me["name"], "typing": data.typing},
        audience="all" if me["role"] == "owner" else "agents",
        exclude_agent=actor.user_id,
    )
    return TypingRead(sent=True)


# ---------------------------------------------------------------------------- consult


async def consult(
    session: AsyncSession, actor: Actor, conversation_id: uuid.UUID, data: ConsultRequest
) -> ConversationDetail:
    """Invite a colleague: they read everything and write notes, never to the customer.
    The invitation reaches their desktop (``conversation.consult.invited``)."""
    conn = await raw(session)
    conv, me = await load(conn, actor, conversation_id)
    owner_or_manager(actor, me, managers=True)
    in_state(conv, "assigned")
    target = await active_agent(conn, actor.scope, data.agent_id)
    if await repo.live_participant(conn, actor.scope, conversation_id, data.agent_id):
        raise Conflict(
            "The agent takes part in the conversation already.",
            code="already-participant",
            field="body.agent_id",
        )
    now = utcnow()
    name = str(target["display_name"])
    await hooks.join_as(
        conn,
        actor.scope,
        conversation_id,
        data.agent_id,
        role="consult",
        state="invited",
        name=name,
        now=now,
        invited_by=actor.user_id,
    )
    await post_event(
        conn,
        actor.scope,
        conversation_id,
        "consult.invited",
        {
            "agent_id": str(data.agent_id),
            "agent_name": name,
            "by": await actor_name(conn, actor),
            "note": data.note,
        },
        audience="agents",
    )
    return await detail(conn, actor.scope, conversation_id)


async def _consultant(
    conn: asyncpg.Connection,
    actor: Actor,
    conversation_id: uuid.UUID,
    refusal: str,
    code: str = "not-invited",
) -> asyncpg.Record:
    """The caller's part as a consulted agent (invited or active); 403 ``code`` else."""
    _, me = await load(conn, actor, conversation_id)
    writable(me)
    if me is None or me["role"] != "consult":
        raise Forbidden(refusal, code=code)
    return me


async def _consult_event(
    conn: asyncpg.Connection,
    actor: Actor,
    conversation_id: uuid.UUID,
    topic: str,
    me: asyncpg.Record,
) -> None:
    await post_event(
        conn,
        actor.scope,
        conversation_id,
        topic,
        {"agent_id": str(actor.user_id), "agent_name": me["name"]},
        audience="agents",
    )


async def consult_accept(
    session: AsyncSession, actor: Actor, conversation_id: uuid.UUID
) -> ConversationDetail:
    conn = await raw(session)
    me = await _consultant(conn, actor, conversation_id, "You were not invited to consult.")
    if me["state"] != "invited":
        raise Conflict("You accepted already.", code="consult-already-accepted")
    await conn.execute(
        "UPDATE conversation_participants SET state = 'active', joined_at = $3 "
        "WHERE tenant_id = $1 AND id = $2",
        actor.scope.tenant_id,
        me["id"],
        utcnow(),
    )
    await _consult_event(conn, actor, conversation_id, "consult.joined", me)
    return await detail(conn, actor.scope, conversation_id)


async def consult_leave(
    session: AsyncSession, actor: Actor, conversation_id: uuid.UUID
) -> ConversationDetail:
    """A consulted agent leaves (or declines the invitation)."""
    conn = await raw(session)
    me = await _consultant(
        conn, actor, conversation_id, "You do not consult on this conversation.", "not-a-consultant"
    )
    await _consult_event(conn, actor, conversation_id, "consult.left", me)
    assert actor.user_id is not None
    await hooks.leave(
        conn, actor.scope, conversation_id, utcnow(), roles=("consult",), who=actor.user_id
    )
    return await detail(conn, actor.scope, conversation_id)


# ---------------------------------------------------------------------------- monitor


async def monitor(
    session: AsyncSession, actor: Actor, conversation_id: uuid.UUID, *, stop: bool = False
) -> ConversationDetail:
    """A supervisor watches silently (the agents are not told; the participant row
    records who watched and when): they get the conversation's events on their stream
    and cannot write. ``stop`` ends it. Both are idempotent."""
    if not actor.may_monitor:
        raise Forbidden(
            "Monitoring is for supervisors, admins and owners signed in as themselves.",
            code="monitor-only",
        )
    assert actor.user_id is not None
    conn = await raw(session)
    _, me = await load(conn, actor, conversation_id)
    now = utcnow()
    if stop:
        if me is not None and me["role"] == "monitor":
            await hooks.leave(
                conn, actor.scope, conversation_id, now, roles=("monitor",), who=actor.user_id
            )
    elif me is None:
        await conn.execute(
            "INSERT INTO conversation_participants (tenant_id, id, conversation_id, kind, role, "
            "state, user_id, name, joined_at) "
            "VALUES ($1, $2, $3, 'supervisor', 'monitor', 'active', $4, $5, $6)",
            actor.scope.tenant_id,
            uuid7(),
            conversation_id,
            actor.user_id,
            await repo.user_name(conn, actor.scope, actor.user_id),
            now,
        )
    elif me["role"] != "monitor":
        raise Conflict("You take part in this conversation already.", code="already-participant")
    return await detail(conn, actor.scope, conversation_id)


# ---------------------------------------------------------------------------- WebSocket


def _conversation_id(body: dict[str, Any]) -> uuid.UUID:
    try:
        return uuid.UUID(str(body.pop("conversation_id")))
    except (KeyError, ValueError):
        raise SwitchboardError(
            "conversation_id: must be a UUID",
            status=422,
            code="validation-failed",
            field="conversation_id",
        ) from None


def _no_more(body: dict[str, Any]) -> None:
    if body:
        key = sorted(body)[0]
        raise SwitchboardError(
            f"{key}: unexpected key", status=422, code="validation-failed", field=key
        )


async def dispatch(
    session: AsyncSession, actor: Actor, kind: str, body: dict[str, Any], out: Outbound
) -> dict[str, Any]:
    """Run one ``conversation.*`` command of the agent WebSocket (the same services as
    REST; the command's keys are the REST body plus ``conversation_id``)."""
    body = dict(body)
    cid = _conversation_id(body)
    anything = IfMatch(None)
    action = kind.removeprefix("conversation.")
    if action in ("reply", "note"):
        if action == "reply":
            made = await reply(session, actor, cid, ReplyCreate.model_validate(body), out)
        else:
            made = await note(session, actor, cid, NoteCreate.model_validate(body))
        return {"message": made.model_dump(mode="json")}
    if action == "typing":
        sent = await typing(session, actor, cid, TypingRequest.model_validate(body))
        return sent.model_dump()
    if action == "transfer":
        data = TransferRequest.model_validate(body)
        result = await transfer(session, actor, cid, data, anything)
    elif action == "consult":
        result = await consult(session, actor, cid, ConsultRequest.model_validate(body))
    elif action == "resolve":
        data_r = ResolveRequest.model_validate(body)
        result = await resolve(session, actor, cid, data_r, anything)
    elif action == "monitor":
        stop = body.pop("stop", False)
        _no_more(body)
        if not isinstance(stop, bool):
            raise SwitchboardError(
                "stop: must be true or false", status=422, code="validation-failed", field="stop"
            )
        result = await monitor(session, actor, cid, stop=stop)
    else:
        _no_more(body)
        simple = {
            "cancel_transfer": lambda: cancel_transfer(session, actor, cid),
            "consult_accept": lambda: consult_accept(session, actor, cid),
            "consult_leave": lambda: consult_leave(session, actor, cid),
            "pending": lambda: pending(session, actor, cid, anything),
            "reopen": lambda: reopen(session, actor, cid, anything),
        }
        if action not in simple:
            raise SwitchboardError(
                f"type: unknown command {kind[:64]!r}",
                status=422,
                code="unknown-command",
                field="type",
            )
        result = await simple[action]()
    return {"conversation": result.model_dump(mode="json")}
