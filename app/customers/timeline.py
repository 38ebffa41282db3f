"""The customer's timeline: every interaction across channels, oldest first.

Two sources, read as one ordered stream on ``(at, id)``:

* ``timeline_events``, written by each interaction in its own transaction
  (conversations opened, messages, notes, dispositions, page views, proactive
  decisions, consent changes...);
* the routing contacts of the customer that are not conversations (voice calls and
  callbacks made through ``POST /v1/contacts`` with ``customer_ref`` = the customer's
  id): one ``call`` or ``callback`` item each, with its queue, state, wait, the agent
  who handled it and the wrap-up code as the disposition.

A merged profile shows its survivor's timeline; a survivor's takes in whatever still
names a profile merged into it (a message that raced the merge, say).
"""

from __future__ import annotations

import base64
import re
import struct
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from app.core.errors import InvalidInput
from app.customers.profiles import not_found, survivor_id
from app.customers.schemas import TimelineItem
from app.db.tenant import TenantScope
from app.routing.snapshots import decode_json

# A cursor is (at in microseconds since the epoch, id): 24 bytes, 32 characters.
CURSOR_PATTERN = r"^[A-Za-z0-9_-]{32}$"
KIND_PATTERN = r"^[a-z][a-z_]{0,31}(\.[a-z][a-z_]{0,31}){0,3}$"
MAX_KINDS = 20
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def encode_cursor(at: datetime, item_id: uuid.UUID) -> str:
    micros = (at - _EPOCH) // timedelta(microseconds=1)
    raw = struct.pack(">q", micros) + item_id.bytes
    return base64.urlsafe_b64encode(raw).decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor)
        (micros,) = struct.unpack(">q", raw[:8])
        return _EPOCH + timedelta(microseconds=micros), uuid.UUID(bytes=raw[8:])
    except (ValueError, TypeError, OverflowError, struct.error) as exc:
        raise InvalidInput("cursor is not one this API issued", field="query.cursor") from exc


def parse_kinds(raw_kinds: str | None) -> list[str] | None:
    """``kinds=call,message.received`` as a list (None: every kind)."""
    if raw_kinds is None:
        return None
    kinds = [k.strip() for k in raw_kinds.split(",") if k.strip()]
    if not kinds:
        raise InvalidInput("query.kinds: name at least one kind", field="query.kinds")
    if len(kinds) > MAX_KINDS:
        raise InvalidInput(f"query.kinds: at most {MAX_KINDS} kinds", field="query.kinds")
    for kind in kinds:
        if not re.match(KIND_PATTERN, kind):
            raise InvalidInput(
                "query.kinds: a kind is lower-case words joined by dots (message.received)",
                field="query.kinds",
            )
    return kinds


async def profile_ids(
    conn: asyncpg.Connection, scope: TenantScope, customer_id: uuid.UUID
) -> list[uuid.UUID]:
    """The surviving profile of ``customer_id`` first, then every profile merged into it."""
    current = await survivor_id(conn, scope, customer_id)
    if current is None:
        raise not_found()
    absorbed = await conn.fetch(
        "SELECT id FROM customers WHERE tenant_id = $1 AND merged_into_id = $2",
        scope.tenant_id,
        current,
    )
    return [current, *(r["id"] for r in absorbed)]


_TIMELINE = """
SELECT * FROM (
    SELECT e.id, e.at, e.kind, e.channel, e.conversation_id, e.ref_id, e.summary,
           NULL::uuid AS queue_id, NULL::text AS queue_name, NULL::text AS state,
           NULL::text AS mode, NULL::float8 AS wait_seconds, NULL::uuid AS agent_id,
           NULL::text AS agent_name, NULL::text AS wrap_up_code,
           NULL::timestamptz AS answered_at, NULL::timestamptz AS completed_at,
           NULL::timestamptz AS abandoned_at, NULL::text AS callback_number,
           NULL::int AS priority
      FROM timeline_events e
     WHERE e.tenant_id = $1 AND e.customer_id = ANY($2::uuid[])
    UNION ALL
    SELECT c.id, c.enqueued_at,
           CASE WHEN c.mode = 'callback' THEN 'callback'
                WHEN c.channel IN ('voice', 'video') THEN 'call'
                ELSE 'contact' END,
           c.channel, NULL::uuid, c.id, NULL::jsonb,
           c.queue_id, q.name, c.state, c.mode, c.wait_seconds, c.agent_id,
           a.display_name, c.wrap_up_code, c.answered_at, c.completed_at, c.abandoned_at,
           c.callback_number, c.priority
      FROM contacts c
      LEFT JOIN queues q ON q.tenant_id = c.tenant_id AND q.id = c.queue_id
      LEFT JOIN agents a ON a.tenant_id = c.tenant_id AND a.id = c.agent_id
     WHERE c.tenant_id = $1 AND c.customer_ref = ANY($3::text[])
       AND c.conversation_id IS NULL
) t
WHERE ($4::text[] IS NULL OR t.kind = ANY($4::text[]))
  AND ($5::timestamptz IS NULL OR t.at > $5)
  AND ($6::timestamptz IS NULL OR t.at < $6)
  AND ($7::timestamptz IS NULL OR (t.at, t.id) > ($7, $8::uuid))
ORDER BY t.at, t.id
LIMIT $9
"""


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _contact_summary(row: asyncpg.Record) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "queue_id": str(row["queue_id"]),
        "queue_name": row["queue_name"],
        "state": row["state"],
        "mode": row["mode"],
        "priority": row["priority"],
        "wait_seconds": row["wait_seconds"],
        "agent_id": str(row["agent_id"]) if row["agent_id"] else None,
        "agent_name": row["agent_name"],
        "disposition": row["wrap_up_code"],
        "answered_at": _iso(row["answered_at"]),
        "completed_at": _iso(row["completed_at"]),
        "abandoned_at": _iso(row["abandoned_at"]),
    }
    if row["callback_number"]:
        summary["callback_number"] = row["callback_number"]
    return summary


async def page(
    conn: asyncpg.Connection,
    scope: TenantScope,
    customer_id: uuid.UUID,
    *,
    limit: int,
    cursor: str | None = None,
    kinds: list[str] | None = None,
    after: datetime | None = None,
    before: datetime | None = None,
) -> tuple[list[TimelineItem], str | None]:
    """One page of the timeline and the next page's cursor (None on the last page)."""
    ids = await profile_ids(conn, scope, customer_id)
    cur_at, cur_id = decode_cursor(cursor) if cursor else (None, None)
    rows = await conn.fetch(
        _TIMELINE,
        scope.tenant_id,
        ids,
        [str(i) for i in ids],
        kinds,
        after,
        before,
        cur_at,
        cur_id,
        limit + 1,
    )
    items = [
        TimelineItem(
            id=r["id"],
            at=r["at"],
            kind=r["kind"],
            channel=r["channel"],
            conversation_id=r["conversation_id"],
            ref_id=r["ref_id"],
            summary=decode_json(r["summary"]) if r["queue_id"] is None else _contact_summary(r),
        )
        for r in rows[:limit]
    ]
    next_cursor = encode_cursor(items[-1].at, items[-1].id) if len(rows) > limit else None
    return items, next_cursor
