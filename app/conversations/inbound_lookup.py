"""Where an inbound message goes (app/conversations/service.py ``receive``): whether it
was taken before (a provider's or a widget's resend), else the conversation it belongs
to, locked for the rest of the transaction."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import asyncpg

from app.conversations.access import not_found as conversation_not_found
from app.customers.service import ResolvedIdentity
from app.db.tenant import TenantScope

if TYPE_CHECKING:
    from app.conversations.service import ChannelRef, InboundContent


async def _duplicate(
    conn: asyncpg.Connection,
    scope: TenantScope,
    channel: ChannelRef,
    content: InboundContent,
    conversation_id: uuid.UUID | None,
) -> asyncpg.Record | None:
    if content.provider_message_id:
        return await conn.fetchrow(
            "SELECT id, conversation_id FROM messages WHERE tenant_id = $1 AND channel_id = $2 "
            "AND provider_message_id = $3",
            scope.tenant_id,
            channel.id,
            content.provider_message_id,
        )
    if content.client_message_id and conversation_id is not None:
        return await conn.fetchrow(
            "SELECT id, conversation_id FROM messages WHERE tenant_id = $1 "
            "AND conversation_id = $2 AND client_message_id = $3",
            scope.tenant_id,
            conversation_id,
            content.client_message_id,
        )
    return None


_CONV = "SELECT id, customer_id, state, channel_id FROM conversations WHERE tenant_id = $1 "

# The duplicate check and the conversation's lock in one round trip, for the two common
# shapes: a provider's message (its id on the channel; the customer's unresolved
# conversation there) and a widget's (its client id in the named conversation).
_LOOKUP = """
SELECT d.id AS dup_id, d.conversation_id AS dup_conversation_id,
       c.id, c.customer_id, c.state, c.channel_id
  FROM (SELECT 1) AS one
  LEFT JOIN LATERAL (
    SELECT id, conversation_id FROM messages
     WHERE tenant_id = $1 AND {dup} LIMIT 1
  ) AS d ON true
  LEFT JOIN LATERAL (
    SELECT id, customer_id, state, channel_id FROM conversations
     WHERE tenant_id = $1 AND {conv}
  ) AS c ON true
"""
_LOOKUP_PROVIDER = _LOOKUP.format(
    dup="channel_id = $2 AND provider_message_id = $3",
    conv="customer_id = $4 AND channel_id = $2 AND state <> 'resolved' "
    "ORDER BY updated_at DESC LIMIT 1 FOR UPDATE",
)
_LOOKUP_CLIENT = _LOOKUP.format(
    dup="conversation_id = $2 AND client_message_id = $3",
    conv="id = $2 AND customer_id = $4 FOR UPDATE",
)


async def duplicate_or_conversation(
    conn: asyncpg.Connection,
    scope: TenantScope,
    channel: ChannelRef,
    identity: ResolvedIdentity,
    content: InboundContent,
    conversation_id: uuid.UUID | None,
) -> tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]:
    """``(duplicate, None)`` for a message taken before, else ``(None, conversation)``:
    the conversation it belongs to, locked (:func:`_find_conversation`), or None."""
    if content.email is None and content.provider_message_id and conversation_id is None:
        sql, key, other = _LOOKUP_PROVIDER, channel.id, content.provider_message_id
    elif content.email is None and content.client_message_id and conversation_id is not None:
        sql, key, other = _LOOKUP_CLIENT, conversation_id, content.client_message_id
    else:
        dup = await _duplicate(conn, scope, channel, content, conversation_id)
        if dup is not None:
            return dup, None
        return None, await _find_conversation(
            conn, scope, channel, identity, content, conversation_id
        )
    row = await conn.fetchrow(sql, scope.tenant_id, key, other, identity.customer_id)
    if row["dup_id"] is not None:
        return {"id": row["dup_id"], "conversation_id": row["dup_conversation_id"]}, None
    if row["id"] is None:
        if conversation_id is not None:
            raise conversation_not_found()
        return None, None
    return None, row


async def _find_conversation(
    conn: asyncpg.Connection,
    scope: TenantScope,
    channel: ChannelRef,
    identity: ResolvedIdentity,
    content: InboundContent,
    conversation_id: uuid.UUID | None,
) -> asyncpg.Record | None:
    """The conversation a message belongs to, locked: the one named (web chat), the
    email thread it answers, or the customer's unresolved one on this channel."""
    if conversation_id is not None:
        row = await conn.fetchrow(
            _CONV + "AND id = $2 AND customer_id = $3 FOR UPDATE",
            scope.tenant_id,
            conversation_id,
            identity.customer_id,
        )
        if row is None:
            raise conversation_not_found()
        return row
    if content.email is not None:
        thread = [m for m in [content.email.in_reply_to, *reversed(content.email.references)] if m]
        if thread:
            found = await conn.fetchval(
                "SELECT conversation_id FROM messages WHERE tenant_id = $1 "
                "AND email_message_id = ANY($2::text[]) ORDER BY created_at DESC LIMIT 1",
                scope.tenant_id,
                thread[:50],
            )
            if found is not None:
                return await conn.fetchrow(_CONV + "AND id = $2 FOR UPDATE", scope.tenant_id, found)
        return None
    return await conn.fetchrow(
        _CONV + "AND customer_id = $2 AND channel_id = $3 AND state <> 'resolved' "
        "ORDER BY updated_at DESC LIMIT 1 FOR UPDATE",
        scope.tenant_id,
        identity.customer_id,
        channel.id,
    )
