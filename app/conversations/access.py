"""Who may read and act on a conversation.

- read: staff with ``conversations:read`` (owners, admins, supervisors) read every
  conversation of the tenant; an agent those they take or took part in, or hold an offer
  of (403 ``not-a-participant`` otherwise). Another tenant's: 404.
- reply: the owning agent, while the conversation is ``assigned``.
- note: the owner and consulted agents (accepted), and tenant owners/admins.
- transfer, cancel a transfer, consult, pending: the owner, or a tenant owner/admin.
- resolve: the owner; the last owner of a ``pending_customer``/``open`` one; owners/admins.
- reopen (``resolved``, ``pending_customer``, ``open``): an agent who owned it; owners/admins.
- monitor: supervisors, admins and owners; monitoring is read-only: any write answers 403
  ``read-only-participant``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.principal import Principal
from app.config import Settings
from app.conversations import hooks
from app.conversations import repository as repo
from app.conversations.agent_schemas import ConversationDetail, ParticipantRead
from app.conversations.schemas import CONVERSATION_COLUMNS
from app.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from app.db.tenant import TenantScope
from app.routing.snapshots import decode_json
from app.storage.base import ObjectStore

MANAGERS = ("owner", "admin")
MONITORS = ("owner", "admin", "supervisor")


@dataclass(frozen=True)
class Actor:
    """Who acts: an agent signed in as themselves, a tenant user, or an API key."""

    scope: TenantScope
    plan: str
    role: str
    user_id: uuid.UUID | None  # a person (users only)
    scopes: frozenset[str]

    @classmethod
    def of(cls, principal: Principal) -> Actor:
        person = principal.user_id if principal.actor_type == "user" else None
        return cls(principal.scope, principal.tenant.plan, principal.role, person, principal.scopes)

    @property
    def agent_id(self) -> uuid.UUID | None:
        return self.user_id if self.role == "agent" else None

    @property
    def manager(self) -> bool:
        return self.role in MANAGERS

    @property
    def may_monitor(self) -> bool:
        return (
            self.user_id is not None
            and self.role in MONITORS
            and "conversations:monitor" in self.scopes
        )


@dataclass(frozen=True)
class Outbound:
    """What a reply needs to go out after the commit."""

    store: ObjectStore
    settings: Settings
    factory: async_sessionmaker[AsyncSession] | None


def not_found() -> NotFound:
    return NotFound("No such conversation.", code="conversation-not-found")


async def load(
    conn: asyncpg.Connection, actor: Actor, conversation_id: uuid.UUID, *, lock: bool = True
) -> tuple[asyncpg.Record, asyncpg.Record | None]:
    """The conversation (locked: the lock order starts here) and the caller's live part."""
    conv = await repo.get(conn, actor.scope, conversation_id, lock=lock)
    if conv is None:
        raise not_found()
    me = None
    if actor.user_id is not None:
        me = await repo.live_participant(conn, actor.scope, conversation_id, actor.user_id)
    return conv, me


def writable(me: asyncpg.Record | None) -> None:
    if me is not None and me["role"] == "monitor":
        raise Forbidden(
            "You monitor this conversation: monitoring is read-only.",
            code="read-only-participant",
        )


def owner_or_manager(actor: Actor, me: asyncpg.Record | None, *, managers: bool) -> None:
    """The owning agent (or, with ``managers``, a tenant owner or admin)."""
    writable(me)
    if actor.agent_id is not None and me is not None:
        if me["role"] == "owner" and me["state"] == "active":
            return
        raise Forbidden(
            "Only the agent who owns the conversation can do this.", code="not-the-owner"
        )
    if managers and actor.manager:
        return
    if actor.agent_id is not None:
        raise Forbidden("You do not take part in this conversation.", code="not-a-participant")
    raise Forbidden("Only the agent who owns the conversation can do this.", code="agent-only")


def in_state(conv: asyncpg.Record, *wanted: str) -> None:
    state = conv["state"]
    if state in wanted:
        return
    if state == "resolved":
        raise Conflict(
            "The conversation is resolved; reopen it first.",
            code="conversation-resolved",
            state=state,
        )
    raise Conflict(
        f"The conversation is {state}; this needs it {' or '.join(wanted)}.",
        code="conversation-not-" + wanted[0].replace("_", "-"),
        state=state,
    )


def no_transfer(conv: asyncpg.Record) -> None:
    if conv["transfer_contact_id"] is not None:
        raise Conflict(
            "A warm transfer is waiting for its agent; cancel it first.",
            code="transfer-pending",
            contact_id=str(conv["transfer_contact_id"]),
        )


async def active_agent(
    conn: asyncpg.Connection, scope: TenantScope, agent_id: uuid.UUID
) -> asyncpg.Record:
    """The agent ``body.agent_id`` names, active in the tenant; 422 otherwise."""
    target = await repo.agent(conn, scope, agent_id)
    if target is None or target["status"] != "active":
        raise InvalidInput(
            "body.agent_id: no such active agent in this tenant",
            code="unknown-reference",
            field="body.agent_id",
        )
    return target


async def readable(
    conn: asyncpg.Connection, actor: Actor, conversation_id: uuid.UUID
) -> asyncpg.Record:
    """The conversation, if the caller may read it: staff with ``conversations:read``
    read every conversation of the tenant; an agent those they take or took part in, or
    hold an offer of (403 ``not-a-participant`` otherwise)."""
    conv = await repo.get(conn, actor.scope, conversation_id)
    if conv is None:
        raise not_found()
    if actor.role != "agent":
        return conv
    who = actor.user_id
    if who is not None and (
        await repo.ever_took_part(conn, actor.scope, conversation_id, who)
        or await repo.live_reservation(conn, actor.scope, conversation_id, who) is not None
    ):
        return conv
    raise Forbidden("You do not take part in this conversation.", code="not-a-participant")


async def detail(
    conn: asyncpg.Connection,
    scope: TenantScope,
    conversation_id: uuid.UUID,
    *,
    row: asyncpg.Record | None = None,
) -> ConversationDetail:
    """The conversation with its participants. ``row``, when the caller has just read the
    conversation (``SELECT *``, as :func:`readable` does), saves reading it again."""
    if row is None:
        row = await conn.fetchrow(
            f"SELECT {CONVERSATION_COLUMNS}, transfer_contact_id FROM conversations "  # noqa: S608
            "WHERE tenant_id = $1 AND id = $2",
            scope.tenant_id,
            conversation_id,
        )
    if row is None:
        raise not_found()
    wanted = set(ConversationDetail.model_fields)
    data = {k: v for k, v in dict(row).items() if k in wanted}
    data["attributes"] = decode_json(data["attributes"])
    people = await repo.participants(conn, scope, conversation_id)
    data["participants"] = [ParticipantRead.model_validate(dict(p)) for p in people]
    return ConversationDetail.model_validate(data)


async def actor_name(conn: asyncpg.Connection, actor: Actor) -> str:
    if actor.user_id is None:
        return "System"
    if actor.agent_id is not None:
        return await hooks.agent_name(conn, actor.scope, actor.agent_id)
    return await repo.user_name(conn, actor.scope, actor.user_id)
