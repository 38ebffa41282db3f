"""Transfers: hand a conversation to a queue or an agent, cold or warm (see
docs/decisions/0015 and ``app.conversations.hooks`` for the accept side)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from app.channels.validation import ROUTING_CHANNEL
from app.conversations import hooks
from app.conversations import repository as repo
from app.conversations.access import (
    Actor,
    active_agent,
    actor_name,
    detail,
    in_state,
    load,
    no_transfer,
    owner_or_manager,
)
from app.conversations.agent_schemas import ConversationDetail, TransferRequest
from app.conversations.events import post_event
from app.core.concurrency import IfMatch
from app.core.errors import Conflict, InvalidInput
from app.db.base import utcnow
from app.routing import contacts
from app.routing.connection import raw
from app.routing.reservations import complete_on
from app.routing.schemas import ContactCreate
from app.routing.snapshots import decode_json
from app.routing.transitions import trail


async def _transfer_target(
    conn: asyncpg.Connection, actor: Actor, conv: asyncpg.Record, data: TransferRequest
) -> tuple[uuid.UUID, str | None]:
    """The queue the new contact waits in, and the target agent's name (agent transfer)."""
    channel = ROUTING_CHANNEL[conv["channel"]]
    if data.queue_id is not None:
        found = await repo.queue(conn, actor.scope, data.queue_id)
        if found is None:
            raise InvalidInput(
                "body.queue_id: no such queue in this tenant",
                code="unknown-reference",
                field="body.queue_id",
            )
        if channel not in found["channels"]:
            raise InvalidInput(
                f"body.queue_id: the queue takes {', '.join(found['channels'])}, not {channel}",
                code="channel-not-taken",
                field="body.queue_id",
            )
        return data.queue_id, None
    assert data.agent_id is not None
    target = await active_agent(conn, actor.scope, data.agent_id)
    if data.agent_id == conv["agent_id"]:
        raise InvalidInput(
            "body.agent_id: the agent owns the conversation already",
            code="transfer-to-owner",
            field="body.agent_id",
        )
    queue_id = await repo.agent_queue_for(
        conn, actor.scope, data.agent_id, channel, conv["queue_id"]
    )
    if queue_id is None:
        raise InvalidInput(
            f"body.agent_id: the agent's routing profile serves no queue taking {channel}",
            code="agent-not-routable",
            field="body.agent_id",
        )
    return queue_id, str(target["display_name"])


async def transfer(
    session: AsyncSession,
    actor: Actor,
    conversation_id: uuid.UUID,
    data: TransferRequest,
    if_match: IfMatch,
) -> ConversationDetail:
    """Hand the conversation over (see docs/decisions/0015).

    The new routing contact waits in the target queue; for an agent, in a queue their
    routing profile serves (the conversation's own when it does), with the agent as
    preferred and sticky agent: offered to them first whenever they are eligible, and
    held for them alone while the queue's sticky timeout runs (a queue without one
    offers it to anyone eligible when they are not).

    ``cold``: the current work completes now (handled minutes, the queue's wrap-up) and
    the conversation is ``queued``. ``warm``: the current agent keeps it until the new
    agent accepts (``hooks.on_accept`` then completes the old work).
    """
    conn = await raw(session)
    conv, me = await load(conn, actor, conversation_id)
    owner_or_manager(actor, me, managers=True)
    if_match.check(conv["version"])
    in_state(conv, "assigned")
    no_transfer(conv)
    queue_id, to_name = await _transfer_target(conn, actor, conv, data)
    now = utcnow()
    by = await actor_name(conn, actor)
    owner_name = await hooks.agent_name(conn, actor.scope, conv["agent_id"])
    old = await repo.contact(conn, actor.scope, conv["contact_id"])
    old_attributes = decode_json(old["attributes"]) if old is not None else {}
    handoff: dict[str, Any] = {
        "mode": data.mode,
        "note": data.note,
        "from_agent_id": conv["agent_id"] and str(conv["agent_id"]),
        "from_name": owner_name,
        "requested_by": by,
        "to_agent_id": data.agent_id and str(data.agent_id),
        "to_name": to_name,
        "requested_at": now.isoformat(),
    }
    attributes: dict[str, Any] = {
        "conversation_id": str(conversation_id),
        "customer_id": str(conv["customer_id"]),
        "channel_type": conv["channel"],
        "transfer": handoff,
    }
    if "flow_answers" in old_attributes:
        attributes["flow_answers"] = old_attributes["flow_answers"]
    await post_event(
        conn,
        actor.scope,
        conversation_id,
        "transfer.requested",
        {k: v for k, v in handoff.items() if k != "requested_at"} | {"queue_id": str(queue_id)},
        audience="agents",
    )
    await repo.timeline(
        conn,
        actor.scope,
        conv,
        "transfer.requested",
        at=now,
        ref_id=conv["id"],
        summary={
            "mode": data.mode,
            "from": owner_name,
            "by": by,
            "to": to_name,
            "queue_id": str(queue_id),
        },
    )
    if data.mode == "cold":
        # The conversation changes first, so that completing the work below is not
        # read as "the owner set it pending" (hooks.on_complete).
        await hooks.set_state(conn, actor.scope, conversation_id, now, state="queued")
        work = await repo.work_on(conn, actor.scope, conv["contact_id"])
        if work is not None and work["state"] == "in_progress":
            await complete_on(conn, actor.scope, work["id"], work["agent_id"])
        await post_event(conn, actor.scope, conversation_id, "agent.left", {"name": owner_name})
    contact_id = await _enqueue_transfer(
        session, actor, conv, queue_id, data.agent_id, attributes, old
    )
    if data.mode == "cold":
        await hooks.set_state(
            conn, actor.scope, conversation_id, now, contact_id=contact_id, queue_id=queue_id
        )
        await post_event(
            conn,
            actor.scope,
            conversation_id,
            "conversation.queued",
            {"contact_id": str(contact_id), "queue_id": str(queue_id)},
        )
        await hooks.leave(conn, actor.scope, conversation_id, now, roles=("owner", "consult"))
    else:
        await hooks.set_state(
            conn, actor.scope, conversation_id, now, transfer_contact_id=contact_id
        )
    return await detail(conn, actor.scope, conversation_id)


async def _enqueue_transfer(
    session: AsyncSession,
    actor: Actor,
    conv: asyncpg.Record,
    queue_id: uuid.UUID,
    agent_id: uuid.UUID | None,
    attributes: dict[str, Any],
    old: asyncpg.Record | None,
) -> uuid.UUID:
    conn = await raw(session)
    data = ContactCreate(
        channel=ROUTING_CHANNEL[conv["channel"]],  # type: ignore[arg-type]
        queue_id=queue_id,
        customer_ref=str(conv["customer_id"]),
        priority=old["priority"] if old is not None else 5,
        attributes=attributes,
        preferred_agent_ids=[agent_id] if agent_id else [],
    )
    contact_id = await contacts.enqueue(
        session, actor.scope, actor.plan, data, conversation_id=conv["id"]
    )
    # enqueue() makes the customer's last agent sticky: after a transfer that is the
    # agent handing over. The target agent is sticky instead (or nobody, for a queue).
    row = await conn.fetchrow(
        "UPDATE contacts SET sticky_agent_id = $3 WHERE tenant_id = $1 AND id = $2 RETURNING shard",
        actor.scope.tenant_id,
        contact_id,
        agent_id,
    )
    await trail(
        conn,
        [
            (
                actor.scope.tenant_id,
                row["shard"],
                contact_id,
                agent_id,
                "transfer",
                utcnow(),
                {
                    "mode": attributes["transfer"]["mode"],
                    "from_agent_id": attributes["transfer"]["from_agent_id"],
                    "sticky_agent_id": agent_id and str(agent_id),
                    "preferred_agent_ids": [str(agent_id)] if agent_id else [],
                },
            )
        ],
    )
    return contact_id


async def cancel_transfer(
    session: AsyncSession, actor: Actor, conversation_id: uuid.UUID
) -> ConversationDetail:
    """Withdraw a warm transfer nobody accepted yet: its contact is abandoned.

    An agent who handed the conversation over and cancels as the target accepts (the
    accept committed first: they left it) hears that no transfer is waiting (409), not
    that they take no part (403)."""
    conn = await raw(session)
    conv, me = await load(conn, actor, conversation_id)
    pending_contact = conv["transfer_contact_id"]
    handed_over = (
        pending_contact is None
        and me is None
        and actor.agent_id is not None
        and await repo.ever_took_part(
            conn, actor.scope, conversation_id, actor.agent_id, role="owner"
        )
    )
    if not handed_over:
        owner_or_manager(actor, me, managers=True)
    if pending_contact is None:
        raise Conflict("No transfer is waiting.", code="no-transfer-pending")
    await contacts.abandon(session, actor.scope, pending_contact)
    now = utcnow()
    await hooks.set_state(conn, actor.scope, conversation_id, now, transfer_contact_id=None)
    await post_event(
        conn,
        actor.scope,
        conversation_id,
        "transfer.cancelled",
        {"contact_id": str(pending_contact), "by": await actor_name(conn, actor)},
        audience="agents",
    )
    return await detail(conn, actor.scope, conversation_id)
