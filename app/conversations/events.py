"""Conversation events: the conversation's own log (the customer's stream reads and
replays it) and a copy in the outbox of each agent or supervisor taking part (their
desktop WebSocket), written in the transaction of the change."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from app.db.tenant import TenantScope
from app.routing.shards import shard_of
from app.routing.transitions import dumps, emit

CONVERSATION_CHANNEL = "sb_conversation"  # NOTIFY payload: "<tenant>:<conversation>:<id>"


async def post_event(
    conn: asyncpg.Connection,
    scope: TenantScope,
    conversation_id: uuid.UUID,
    topic: str,
    payload: dict[str, Any],
    *,
    audience: str = "all",
    exclude_agent: uuid.UUID | None = None,
) -> int:
    """Append an event; ``audience`` ``all`` (the customer sees it too) or ``agents``.
    Every live agent or supervisor participant gets it as ``conversation.<topic>``."""
    # One round trip: the event, its NOTIFY (delivered at commit) and who takes part.
    row = await conn.fetchrow(
        _POST,
        scope.tenant_id,
        conversation_id,
        topic,
        audience,
        dumps(payload),
        CONVERSATION_CHANNEL,
    )
    event_id: int = row["id"]
    await copy_to_agents(
        conn, scope, conversation_id, topic, payload, event_id, row["watchers"], exclude_agent
    )
    return event_id


def event_ctes(
    tenant: str, conversation: str, topic: str, audience: str, payload: str, channel: str
) -> str:
    """:func:`post_event`'s writes as common table expressions for a statement that
    does more (its arguments: the SQL of each value). ``announced`` yields the event's
    ``id`` and the ``watchers`` to pass to :func:`copy_to_agents`; the statement must
    select from it (the NOTIFY is sent by reading it)."""
    return f"""
    event AS (
      INSERT INTO conversation_events (tenant_id, conversation_id, topic, audience, payload,
                                       created_at)
      VALUES ({tenant}, {conversation}, {topic}, {audience}, {payload}::jsonb, now())
      RETURNING id
    ), announced AS (
      SELECT event.id, ARRAY(
               SELECT DISTINCT coalesce(agent_id, user_id) FROM conversation_participants
                WHERE tenant_id = {tenant} AND conversation_id = {conversation}
                  AND state <> 'left' AND coalesce(agent_id, user_id) IS NOT NULL
             ) AS watchers
        FROM event, LATERAL (
          SELECT pg_notify({channel}, {tenant}::text || ':' || {conversation}::text || ':'
                           || event.id::text)
        ) AS n
    )
    """  # noqa: S608 - the values are placeholders or literals of ours


_POST_CTES = event_ctes("$1", "$2", "$3", "$4", "$5", "$6")
_POST = f"WITH {_POST_CTES} SELECT id, watchers FROM announced"  # noqa: S608 - a constant


async def copy_to_agents(
    conn: asyncpg.Connection,
    scope: TenantScope,
    conversation_id: uuid.UUID,
    topic: str,
    payload: dict[str, Any],
    event_id: int,
    watchers: list[uuid.UUID],
    exclude_agent: uuid.UUID | None = None,
) -> None:
    """The event in the outbox of each agent or supervisor taking part (``watchers``)."""
    shard = shard_of(scope.tenant_id)
    agent_topic = topic if topic.startswith("conversation.") else f"conversation.{topic}"
    body = {"conversation_id": str(conversation_id), "event_id": event_id, **payload}
    await emit(
        conn,
        [
            (scope.tenant_id, shard, who, agent_topic, body)
            for who in watchers
            if who != exclude_agent
        ],
    )
