"""Ending work on a conversation: resolve (with the disposition), pending on the
customer, and reopening a resolved or pending one."""

from __future__ import annotations

import uuid

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from app.conversations import hooks
from app.conversations import repository as repo
from app.conversations.access import (
    Actor,
    actor_name,
    detail,
    in_state,
    load,
    no_transfer,
    owner_or_manager,
    writable,
)
from app.conversations.agent_schemas import ConversationDetail, ResolveRequest
from app.conversations.events import post_event
from app.conversations.service import ChannelRef, route
from app.core.concurrency import IfMatch
from app.core.errors import Conflict, Forbidden, InvalidInput
from app.db.base import utcnow
from app.routing import contacts
from app.routing.connection import raw
from app.routing.reservations import complete_on
from app.routing.snapshots import decode_json
from app.routing.transitions import finish_wrap_ups


async def _wrap_up_code(
    conn: asyncpg.Connection, actor: Actor, conv: asyncpg.Record, code: str | None
) -> str | None:
    """The queue's own spelling of the code (compared case-insensitively)."""
    if code is None:
        return None
    codes: list[str] = []
    if conv["queue_id"] is not None:
        found = await repo.queue(conn, actor.scope, conv["queue_id"])
        codes = list(found["wrap_up_codes"] or []) if found is not None else []
    match = [c for c in codes if c.lower() == code.lower()]
    if not match:
        raise InvalidInput(
            "body.wrap_up_code: not one of the queue's wrap-up codes "
            f"({', '.join(codes) or 'none'})",
            field="body.wrap_up_code",
        )
    return match[0]


async def resolve(
    session: AsyncSession,
    actor: Actor,
    conversation_id: uuid.UUID,
    data: ResolveRequest,
    if_match: IfMatch,
) -> ConversationDetail:
    """The customer's issue is solved: the owner's work completes with the disposition
    (no further wrap-up: the code is the wrap-up), everyone leaves, the conversation is
    ``resolved``. A later customer message reopens it (routes it again)."""
    conn = await raw(session)
    conv, me = await load(conn, actor, conversation_id)
    writable(me)
    in_state(conv, "assigned", "pending_customer", "open", "queued")
    if conv["state"] == "assigned" or actor.agent_id is None:
        owner_or_manager(actor, me, managers=True)
    elif conv["state"] == "queued" or not await repo.ever_took_part(
        conn, actor.scope, conversation_id, actor.agent_id, role="owner"
    ):
        raise Forbidden("You do not own this conversation.", code="not-the-owner")
    if_match.check(conv["version"])
    no_transfer(conv)
    code = await _wrap_up_code(conn, actor, conv, data.wrap_up_code)
    now = utcnow()
    await hooks.set_state(
        conn,
        actor.scope,
        conversation_id,
        now,
        state="resolved",
        resolved_at=now,
        wrap_up_code=code,
    )
    waiting = await repo.contact(conn, actor.scope, conv["contact_id"])
    in_line = waiting is not None and waiting["state"] in ("queued", "offered")
    if conv["state"] == "queued" and waiting is not None and in_line:
        await contacts.abandon(session, actor.scope, waiting["id"])
    work = await repo.work_on(conn, actor.scope, conv["contact_id"])
    if work is not None and work["state"] == "in_progress":
        await complete_on(conn, actor.scope, work["id"], work["agent_id"])
    if work is not None:
        await finish_wrap_ups(
            conn, now=now, reason="resolved", reservation_ids=[work["id"]], code=code
        )
    if code is not None and conv["contact_id"] is not None:
        # The disposition on the contact too (a queue without wrap-up time completed it
        # above, before the code was given).
        await conn.execute(
            "UPDATE contacts SET wrap_up_code = $3, version = version + 1 "
            "WHERE tenant_id = $1 AND id = $2",
            actor.scope.tenant_id,
            conv["contact_id"],
            code,
        )
    by = await actor_name(conn, actor)
    if code is not None:
        summary = {"wrap_up_code": code, "by": by}
        await repo.timeline(
            conn, actor.scope, conv, "disposition", at=now, ref_id=conv["id"], summary=summary
        )
    await repo.timeline(
        conn,
        actor.scope,
        conv,
        "conversation.resolved",
        at=now,
        ref_id=conv["id"],
        summary={"by": by},
    )
    await post_event(
        conn,
        actor.scope,
        conversation_id,
        "disposition",
        {"wrap_up_code": code, "by": by},
        audience="agents",
    )
    await post_event(
        conn, actor.scope, conversation_id, "conversation.resolved", {"at": now.isoformat()}
    )
    await hooks.leave(
        conn, actor.scope, conversation_id, now, roles=("owner", "consult", "monitor")
    )
    return await detail(conn, actor.scope, conversation_id)


async def pending(
    session: AsyncSession, actor: Actor, conversation_id: uuid.UUID, if_match: IfMatch
) -> ConversationDetail:
    """Done for now, waiting on the customer: the owner's work completes (handled
    minutes, then the queue's wrap-up); the customer's next message routes it again."""
    conn = await raw(session)
    conv, me = await load(conn, actor, conversation_id)
    owner_or_manager(actor, me, managers=True)
    if_match.check(conv["version"])
    in_state(conv, "assigned")
    no_transfer(conv)
    await hooks.mark_pending(conn, actor.scope, conv, utcnow())
    work = await repo.work_on(conn, actor.scope, conv["contact_id"])
    if work is not None and work["state"] == "in_progress":
        await complete_on(conn, actor.scope, work["id"], work["agent_id"])
    return await detail(conn, actor.scope, conversation_id)


async def reopen(
    session: AsyncSession, actor: Actor, conversation_id: uuid.UUID, if_match: IfMatch
) -> ConversationDetail:
    """Follow up on a resolved (or pending) conversation: it is routed again, to its
    queue, with the agent who reopens it as preferred and sticky agent. Replies wait for
    that offer: an agent writes to a customer only while holding the conversation."""
    conn = await raw(session)
    conv, me = await load(conn, actor, conversation_id)
    writable(me)
    in_state(conv, "resolved", "pending_customer", "open")
    agent_id = actor.agent_id
    if agent_id is not None:
        if not await repo.ever_took_part(
            conn, actor.scope, conversation_id, agent_id, role="owner"
        ):
            raise Forbidden("You never owned this conversation.", code="not-the-owner")
    elif not actor.manager:
        raise Forbidden("Only an agent or a tenant owner or admin can reopen.", code="agent-only")
    if_match.check(conv["version"])
    channel = await conn.fetchrow(
        "SELECT id, type, config FROM channels WHERE tenant_id = $1 AND id = $2",
        actor.scope.tenant_id,
        conv["channel_id"],
    )
    ref = ChannelRef(channel["id"], channel["type"], dict(decode_json(channel["config"]) or {}))
    contact_id = await route(
        session,
        actor.scope,
        actor.plan,
        conversation_id=conversation_id,
        channel=ref,
        at=utcnow(),
        queue_id=conv["queue_id"],
        preferred_agent_ids=[agent_id] if agent_id else None,
    )
    if contact_id is None:
        now_row = await repo.get(conn, actor.scope, conversation_id)
        reason = decode_json(now_row["attributes"]).get("unrouted_reason") if now_row else None
        raise Conflict(
            f"The conversation could not be routed: {reason}.",
            code="conversation-not-routed",
        )
    if agent_id is not None:
        await conn.execute(
            "UPDATE contacts SET sticky_agent_id = $3 WHERE tenant_id = $1 AND id = $2",
            actor.scope.tenant_id,
            contact_id,
            agent_id,
        )
    return await detail(conn, actor.scope, conversation_id)
