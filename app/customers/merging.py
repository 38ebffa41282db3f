"""Merge and split of customer profiles (docs/decisions/0017-customer-profiles.md).

A merge folds one person's second profile into the first, in one transaction, with both
profiles locked in id order; a split moves identities, and what came through them, to a
new profile. Both leave a record on each profile (``customer_changes``), which is what
makes a merge undoable: the ``merged`` record lists the identities that came over.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from app.core.errors import InvalidInput
from app.customers.profiles import (
    CUSTOMER_COLUMNS,
    Actor,
    bump_version,
    live_row,
    lock_identities,
    merged_error,
    not_found,
    record_change,
    rows_touched,
)
from app.customers.schemas import MAX_ATTRIBUTES, Moved
from app.customers.service import add_timeline
from app.db.base import utcnow, uuid7
from app.db.tenant import TenantScope
from app.routing.snapshots import decode_json
from app.routing.transitions import dumps


def _merged_attributes(
    survivor: dict[str, Any], absorbed: dict[str, Any]
) -> tuple[dict[str, Any], list[str], list[str]]:
    """The survivor's attributes win; the absorbed profile's other keys are taken, in key
    order, while there is room under the limit."""
    merged = dict(survivor)
    taken: list[str] = []
    dropped: list[str] = []
    for key in sorted(absorbed):
        if key in merged:
            continue
        if len(merged) >= MAX_ATTRIBUTES:
            dropped.append(key)
            continue
        merged[key] = absorbed[key]
        taken.append(key)
    return merged, taken, dropped


async def _move(conn: asyncpg.Connection, sql: str, scope: TenantScope, *args: Any) -> int:
    return rows_touched(await conn.execute(sql, scope.tenant_id, *args))


async def merge(
    conn: asyncpg.Connection,
    scope: TenantScope,
    survivor_id: uuid.UUID,
    absorbed_id: uuid.UUID,
    actor: Actor,
) -> Moved:
    """Fold ``absorbed_id`` into ``survivor_id``: identities, conversations and their
    messages, timeline, page views, proactive decisions (frequency caps keep counting),
    consents (per channel the most recent wins), attributes (the survivor's win) and
    routing contacts (``customer_ref``, so history and sticky routing follow). The
    absorbed profile stays, pointing at the survivor."""
    if survivor_id == absorbed_id:
        raise InvalidInput(
            "body.customer_id: a profile cannot be merged into itself",
            code="merge-into-self",
            field="body.customer_id",
        )
    # Identities first, then the profiles, each in id order (see lock_identities).
    await lock_identities(conn, scope, [survivor_id, absorbed_id])
    rows = {
        r["id"]: r
        for r in await conn.fetch(
            f"SELECT {CUSTOMER_COLUMNS} FROM customers WHERE tenant_id = $1 "  # noqa: S608
            "AND id = ANY($2::uuid[]) ORDER BY id FOR UPDATE",
            scope.tenant_id,
            [survivor_id, absorbed_id],
        )
    }
    survivor, absorbed = rows.get(survivor_id), rows.get(absorbed_id)
    if survivor is None:
        raise not_found()
    if absorbed is None:
        raise not_found("body.customer_id")
    if survivor["merged_into_id"] is not None:
        raise merged_error(survivor)
    if absorbed["merged_into_id"] is not None:
        raise merged_error(absorbed, "body.customer_id")
    t = scope.tenant_id
    old, new = absorbed_id, survivor_id
    now = utcnow()
    identity_ids = [
        r["id"]
        for r in await conn.fetch(
            "UPDATE customer_identities SET customer_id = $3 "
            "WHERE tenant_id = $1 AND customer_id = $2 RETURNING id",
            t,
            old,
            new,
        )
    ]
    conversation_ids = [
        r["id"]
        for r in await conn.fetch(
            "UPDATE conversations SET customer_id = $3, version = version + 1, updated_at = $4 "
            "WHERE tenant_id = $1 AND customer_id = $2 RETURNING id",
            t,
            old,
            new,
            now,
        )
    ]
    # Conversations before their contacts, the order accepting an offer locks them in.
    contacts = await _move(
        conn,
        "UPDATE contacts SET customer_ref = $3 WHERE tenant_id = $1 AND customer_ref = $2",
        scope,
        str(old),
        str(new),
    )
    # Messages through the conversations that moved (indexed by conversation).
    counts = {
        "messages": await _move(
            conn,
            "UPDATE messages SET customer_id = $3 WHERE tenant_id = $1 "
            "AND conversation_id = ANY($4::uuid[]) AND customer_id = $2",
            scope,
            old,
            new,
            conversation_ids,
        )
    }
    for table in ("timeline_events", "page_views", "proactive_decisions"):
        counts[table] = await _move(
            conn,
            f"UPDATE {table} SET customer_id = $3 "  # noqa: S608
            "WHERE tenant_id = $1 AND customer_id = $2",
            scope,
            old,
            new,
        )
    consents = [
        r["channel"]
        for r in await conn.fetch(
            """
            INSERT INTO customer_consents (tenant_id, customer_id, channel, status, source,
                updated_at)
            SELECT tenant_id, $3, channel, status, source, updated_at FROM customer_consents
             WHERE tenant_id = $1 AND customer_id = $2
            ON CONFLICT (tenant_id, customer_id, channel) DO UPDATE
               SET status = EXCLUDED.status, source = EXCLUDED.source,
                   updated_at = EXCLUDED.updated_at
             WHERE customer_consents.updated_at < EXCLUDED.updated_at
            RETURNING channel
            """,
            t,
            old,
            new,
        )
    ]
    await conn.execute(
        "DELETE FROM customer_consents WHERE tenant_id = $1 AND customer_id = $2", t, old
    )
    attributes, taken, dropped = _merged_attributes(
        decode_json(survivor["attributes"]), decode_json(absorbed["attributes"])
    )
    seen = [x for x in (survivor["last_seen_at"], absorbed["last_seen_at"]) if x is not None]
    await conn.execute(
        "UPDATE customers SET attributes = $3::jsonb, display_name = $4, timezone = $5, "
        "language = $6, last_seen_at = $7, version = version + 1, updated_at = $8 "
        "WHERE tenant_id = $1 AND id = $2",
        t,
        new,
        dumps(attributes),
        survivor["display_name"] or absorbed["display_name"],
        survivor["timezone"] or absorbed["timezone"],
        survivor["language"] or absorbed["language"],
        max(seen) if seen else None,
        now,
    )
    # The absorbed profile, and any it had absorbed before, point at the survivor.
    await conn.execute(
        "UPDATE customers SET merged_into_id = $3, version = version + 1, updated_at = $4 "
        "WHERE tenant_id = $1 AND (id = $2 OR merged_into_id = $2)",
        t,
        old,
        new,
        now,
    )
    moved = Moved(
        identity_ids=identity_ids,
        conversations=len(conversation_ids),
        messages=counts["messages"],
        timeline_events=counts["timeline_events"],
        page_views=counts["page_views"],
        proactive_decisions=counts["proactive_decisions"],
        consents=consents,
        contacts=contacts,
        attributes=taken,
        attributes_dropped=dropped,
    )
    detail = moved.model_dump(mode="json")
    await record_change(conn, scope, new, "merged", actor, now, other=old, detail=detail)
    await record_change(conn, scope, old, "absorbed", actor, now, other=new, detail=detail)
    await add_timeline(
        conn,
        scope,
        customer_id=new,
        kind="customer.merged",
        at=now,
        ref_id=old,
        summary={"absorbed_customer_id": str(old), "identities": len(identity_ids)},
    )
    return moved


def _check_split_ids(ids: list[uuid.UUID], owned: dict[uuid.UUID, asyncpg.Record]) -> None:
    seen: dict[uuid.UUID, int] = {}
    for i, identity_id in enumerate(ids):
        field = f"body.identity_ids.{i}"
        if identity_id in seen:
            raise InvalidInput(
                f"{field}: names the same identity as body.identity_ids.{seen[identity_id]}",
                field=field,
            )
        seen[identity_id] = i
        if identity_id not in owned:
            raise InvalidInput(
                f"{field}: the customer has no such identity",
                code="identity-not-on-customer",
                field=field,
            )
    if len(seen) == len(owned):
        raise InvalidInput(
            "body.identity_ids: names every identity of the customer; at least one must stay",
            code="split-takes-all",
            field="body.identity_ids",
        )


async def split(
    conn: asyncpg.Connection,
    scope: TenantScope,
    customer_id: uuid.UUID,
    identity_ids: list[uuid.UUID],
    display_name: str | None,
    actor: Actor,
) -> tuple[uuid.UUID, Moved]:
    """Move ``identity_ids`` to a new profile with what came through them: the
    conversations opened through them (and their messages and routing contacts), the
    timeline of those conversations and of those identities, their page views, and
    callbacks to a moved phone number. Returns the new profile's id."""
    await live_row(conn, scope, customer_id, with_identities=True)
    t, old = scope.tenant_id, customer_id
    owned = {
        r["id"]: r
        for r in await conn.fetch(
            "SELECT id, kind, value FROM customer_identities "
            "WHERE tenant_id = $1 AND customer_id = $2",
            t,
            old,
        )
    }
    _check_split_ids(identity_ids, owned)
    now = utcnow()
    new = uuid7()
    await conn.execute(
        "INSERT INTO customers (tenant_id, id, display_name, attributes, version, created_at, "
        "updated_at) VALUES ($1, $2, $3, '{}'::jsonb, 1, $4, $4)",
        t,
        new,
        display_name,
        now,
    )
    await conn.execute(
        "UPDATE customer_identities SET customer_id = $3 "
        "WHERE tenant_id = $1 AND customer_id = $2 AND id = ANY($4::uuid[])",
        t,
        old,
        new,
        identity_ids,
    )
    conversation_ids = [
        r["id"]
        for r in await conn.fetch(
            "UPDATE conversations SET customer_id = $3, version = version + 1, updated_at = $4 "
            "WHERE tenant_id = $1 AND customer_id = $2 AND identity_id = ANY($5::uuid[]) "
            "RETURNING id",
            t,
            old,
            new,
            now,
            identity_ids,
        )
    ]
    numbers = [owned[i]["value"] for i in identity_ids if owned[i]["kind"] == "phone"]
    contacts = await _move(
        conn,
        "UPDATE contacts SET customer_ref = $3 WHERE tenant_id = $1 AND customer_ref = $2 "
        "AND (conversation_id = ANY($4::uuid[]) "
        "OR (conversation_id IS NULL AND callback_number = ANY($5::text[])))",
        scope,
        str(old),
        str(new),
        conversation_ids,
        numbers,
    )
    messages = await _move(
        conn,
        "UPDATE messages SET customer_id = $3 WHERE tenant_id = $1 AND customer_id = $2 "
        "AND conversation_id = ANY($4::uuid[])",
        scope,
        old,
        new,
        conversation_ids,
    )
    timeline = await _move(
        conn,
        "UPDATE timeline_events SET customer_id = $3 WHERE tenant_id = $1 AND customer_id = $2 "
        "AND (conversation_id = ANY($4::uuid[]) OR identity_id = ANY($5::uuid[]))",
        scope,
        old,
        new,
        conversation_ids,
        identity_ids,
    )
    page_views = await _move(
        conn,
        "UPDATE page_views SET customer_id = $3 WHERE tenant_id = $1 AND customer_id = $2 "
        "AND identity_id = ANY($4::uuid[])",
        scope,
        old,
        new,
        identity_ids,
    )
    await bump_version(conn, scope, old, now)
    moved = Moved(
        identity_ids=identity_ids,
        conversations=len(conversation_ids),
        messages=messages,
        timeline_events=timeline,
        page_views=page_views,
        contacts=contacts,
    )
    detail = moved.model_dump(mode="json")
    await record_change(conn, scope, old, "split", actor, now, other=new, detail=detail)
    await record_change(conn, scope, new, "split_from", actor, now, other=old, detail=detail)
    for who, kind, other in ((old, "customer.split", new), (new, "customer.split_from", old)):
        await add_timeline(
            conn,
            scope,
            customer_id=who,
            kind=kind,
            at=now,
            ref_id=other,
            summary={"other_customer_id": str(other), "identities": len(identity_ids)},
        )
    return new, moved
