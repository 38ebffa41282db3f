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
    event_id: int = await conn.fetchval(
        """
        WITH ins AS (
          INSERT INTO conversation_events (tenant_id, conversation_id, topic, audience,
                                           payload, created_at)
          VALUES ($1, $2, $3, $4, $5::jsonb, now())
          RETURNING id
        )
        SELECT id FROM ins, LATERAL (
          SELECT pg_notify($6, $1::text || ':' || $2::text || ':' || ins.id::text)
        ) n
        """,
        scope.tenant_id,
        conversation_id,
        topic,
        audience,
        dumps(payload),
        CONVERSATION_CHANNEL,
    )
    watchers = await conn.fetch(
        "SELECT DISTINCT coalesce(agent_id, user_id) AS who FROM conversation_participants "
        "WHERE tenant_id = $1 AND conversation_id = $2 AND state <> 'left' "
        "AND coalesce(agent_id, user_id) IS NOT NULL",
        scope.tenant_id,
        conversation_id,
    )
    shard = shard_of(scope.tenant_id)
    agent_topic = topic if topic.startswith("conversation.") else f"conversation.{topic}"
    body = {"conversation_id": str(conversation_id), "event_id": event_id, **payload}
    await emit(
        conn,
        [
            (scope.tenant_id, shard, w["who"], agent_topic, body)
            for w in watchers
            if w["who"] != exclude_agent
        ],
    )
    return event_id
