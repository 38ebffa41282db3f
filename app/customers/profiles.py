"""Customer profiles through the API: create, change, identities, consent (merge and
split are in ``app.customers.merging``).

Everything runs on the request's asyncpg connection (``app.routing.connection.raw``), in
its transaction, with ``app.tenant_id`` bound: row-level security stands behind every
``tenant_id = $1``. A profile being changed is locked first; a change that moves or
deletes identities locks them before the profile (``lock_identities``). A merged
profile stays readable and points at its survivor, but refuses changes
(``customer-merged``).
See docs/decisions/0017-customer-profiles.md.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from app.core.concurrency import IfMatch
from app.core.errors import Conflict, InvalidInput, NotFound
from app.customers.schemas import (
    MAX_ATTRIBUTES,
    ConsentRead,
    CustomerCreate,
    CustomerRead,
    CustomerUpdate,
    IdentityRead,
)
from app.customers.service import add_timeline, normalize_identity
from app.db.base import utcnow, uuid7
from app.db.tenant import TenantScope
from app.routing.snapshots import decode_json
from app.routing.transitions import dumps

CUSTOMER_COLUMNS = (
    "id, display_name, attributes, timezone, language, merged_into_id, last_seen_at, "
    "version, created_at, updated_at"
)
_IDENTITY = "id, customer_id, kind, value, verified, bounced_at, created_at, last_seen_at"


@dataclass(frozen=True)
class Actor:
    """Who made a change, for ``customer_changes``."""

    type: str
    id: str | None


# -- errors -------------------------------------------------------------------------------


def not_found(field: str | None = None) -> NotFound:
    return NotFound("No such customer.", code="customer-not-found", field=field)


def merged_error(row: asyncpg.Record, field: str = "path.customer_id") -> Conflict:
    return Conflict(
        f"The customer was merged into {row['merged_into_id']}; change that profile instead.",
        code="customer-merged",
        field=field,
        merged_into_id=str(row["merged_into_id"]),
    )


def _identity_taken(field: str, holder: uuid.UUID) -> Conflict:
    return Conflict(
        f"{field}: the identity belongs to customer {holder}; merge the two profiles if "
        "they are one person.",
        code="identity-taken",
        field=field,
        customer_id=str(holder),
    )


def rows_touched(status: str) -> int:
    """Rows touched, from asyncpg's command tag ("UPDATE 3")."""
    return int(status.rsplit(" ", 1)[-1])


# -- reads --------------------------------------------------------------------------------


async def _row(
    conn: asyncpg.Connection, scope: TenantScope, customer_id: uuid.UUID, *, lock: bool = False
) -> asyncpg.Record | None:
    sql = f"SELECT {CUSTOMER_COLUMNS} FROM customers WHERE tenant_id = $1 AND id = $2"  # noqa: S608
    return await conn.fetchrow(sql + (" FOR UPDATE" if lock else ""), scope.tenant_id, customer_id)


async def lock_identities(
    conn: asyncpg.Connection, scope: TenantScope, customer_ids: list[uuid.UUID]
) -> None:
    """Lock the profiles' identities, in id order. Changes that move or delete
    identities take these locks before the profile's, as ingress does (it marks the
    identity seen, then may name its profile): one lock order, no deadlock."""
    await conn.execute(
        "SELECT 1 FROM customer_identities WHERE tenant_id = $1 "
        "AND customer_id = ANY($2::uuid[]) ORDER BY id FOR UPDATE",
        scope.tenant_id,
        customer_ids,
    )


async def survivor_id(
    conn: asyncpg.Connection, scope: TenantScope, customer_id: uuid.UUID
) -> uuid.UUID | None:
    """The profile that stands for ``customer_id`` (itself, or the one it was merged
    into), or None if the tenant has no such profile. One hop is all there is: a merge
    re-points every profile the absorbed one had absorbed (:mod:`app.customers.merging`)."""
    found: uuid.UUID | None = await conn.fetchval(
        "SELECT coalesce(merged_into_id, id) FROM customers WHERE tenant_id = $1 AND id = $2",
        scope.tenant_id,
        customer_id,
    )
    return found


async def live_row(
    conn: asyncpg.Connection,
    scope: TenantScope,
    customer_id: uuid.UUID,
    *,
    with_identities: bool = False,
) -> asyncpg.Record:
    """The profile locked for a change (after its identities, ``with_identities``):
    404 if none, 409 if merged away."""
    if with_identities:
        await lock_identities(conn, scope, [customer_id])
    row = await _row(conn, scope, customer_id, lock=True)
    if row is None:
        raise not_found()
    if row["merged_into_id"] is not None:
        raise merged_error(row)
    return row


async def reads(
    conn: asyncpg.Connection, scope: TenantScope, rows: Sequence[asyncpg.Record]
) -> list[CustomerRead]:
    """Profiles with their identities and consents (two queries for the lot)."""
    ids = [r["id"] for r in rows]
    identities: dict[uuid.UUID, list[IdentityRead]] = {i: [] for i in ids}
    consents: dict[uuid.UUID, list[ConsentRead]] = {i: [] for i in ids}
    if ids:
        for r in await conn.fetch(
            f"SELECT {_IDENTITY} FROM customer_identities "  # noqa: S608
            "WHERE tenant_id = $1 AND customer_id = ANY($2::uuid[]) ORDER BY created_at, id",
            scope.tenant_id,
            ids,
        ):
            identities[r["customer_id"]].append(IdentityRead.model_validate(dict(r)))
        for r in await conn.fetch(
            "SELECT customer_id, channel, status, source, updated_at FROM customer_consents "
            "WHERE tenant_id = $1 AND customer_id = ANY($2::uuid[]) ORDER BY channel",
            scope.tenant_id,
            ids,
        ):
            consents[r["customer_id"]].append(ConsentRead.model_validate(dict(r)))
    return [
        CustomerRead(
            id=r["id"],
            display_name=r["display_name"],
            attributes=decode_json(r["attributes"]),
            timezone=r["timezone"],
            language=r["language"],
            merged_into_id=r["merged_into_id"],
            identities=identities[r["id"]],
            consents=consents[r["id"]],
            last_seen_at=r["last_seen_at"],
            version=r["version"],
            created_at=r["created_at"],
            updated_at=r["updated_at"],
        )
        for r in rows
    ]


async def read(
    conn: asyncpg.Connection, scope: TenantScope, customer_id: uuid.UUID
) -> CustomerRead:
    row = await _row(conn, scope, customer_id)
    if row is None:
        raise not_found()
    return (await reads(conn, scope, [row]))[0]


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def parse_identity_filter(raw_filter: str) -> tuple[str, str]:
    """``kind:value`` of ``GET /v1/customers?identity=``, normalised."""
    kind, sep, value = raw_filter.partition(":")
    field = "query.identity"
    if not sep or not value:
        raise InvalidInput(f"{field}: write it as kind:value (phone:+12025550123)", field=field)
    return kind, normalize_identity(kind, value, field=field)


async def list_rows(
    conn: asyncpg.Connection,
    scope: TenantScope,
    limit: int,
    after_id: uuid.UUID | None,
    *,
    identity: tuple[str, str] | None = None,
    name_prefix: str | None = None,
) -> list[asyncpg.Record]:
    """Live profiles, newest first (``limit + 1`` rows for the pager)."""
    return list(
        await conn.fetch(
            f"""
            SELECT {CUSTOMER_COLUMNS} FROM customers c
             WHERE tenant_id = $1 AND merged_into_id IS NULL
               AND ($2::uuid IS NULL OR id < $2)
               AND ($3::text IS NULL OR lower(display_name) LIKE $3 ESCAPE '\\')
               AND ($4::text IS NULL OR id IN (
                    SELECT customer_id FROM customer_identities i
                     WHERE i.tenant_id = $1 AND i.kind = $4 AND i.value = $5))
             ORDER BY id DESC LIMIT $6
            """,  # noqa: S608
            scope.tenant_id,
            after_id,
            _escape_like(name_prefix.lower()) + "%" if name_prefix else None,
            identity[0] if identity else None,
            identity[1] if identity else None,
            limit + 1,
        )
    )


# -- create and change --------------------------------------------------------------------


async def _holder(
    conn: asyncpg.Connection, scope: TenantScope, kind: str, value: str
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT id, customer_id FROM customer_identities "
        "WHERE tenant_id = $1 AND kind = $2 AND value = $3",
        scope.tenant_id,
        kind,
        value,
    )


async def _insert_identity(
    conn: asyncpg.Connection,
    scope: TenantScope,
    customer_id: uuid.UUID,
    kind: str,
    value: str,
    verified: bool,
    field: str,
    now: datetime,
) -> uuid.UUID:
    identity_id = uuid7()
    inserted = await conn.fetchval(
        "INSERT INTO customer_identities (tenant_id, id, customer_id, kind, value, verified, "
        "created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) "
        "ON CONFLICT (tenant_id, kind, value) DO NOTHING RETURNING id",
        scope.tenant_id,
        identity_id,
        customer_id,
        kind,
        value,
        verified,
        now,
    )
    if inserted is None:  # taken meanwhile by a concurrent transaction
        holder = await _holder(conn, scope, kind, value)
        raise _identity_taken(field, holder["customer_id"] if holder else customer_id)
    return identity_id


async def create(conn: asyncpg.Connection, scope: TenantScope, data: CustomerCreate) -> uuid.UUID:
    """A profile with its identities. An identity another profile holds is refused
    (409 ``identity-taken`` naming the holder), never merged on its own."""
    normalized: list[tuple[str, str, bool, str]] = []
    seen: dict[tuple[str, str], int] = {}
    for i, ident in enumerate(data.identities):
        field = f"body.identities.{i}.value"
        value = normalize_identity(ident.kind, ident.value, field=field)
        if (ident.kind, value) in seen:
            raise InvalidInput(
                f"{field}: the same identity as body.identities.{seen[ident.kind, value]}",
                field=field,
            )
        seen[ident.kind, value] = i
        normalized.append((ident.kind, value, ident.verified, field))
    for kind, value, _, field in normalized:
        holder = await _holder(conn, scope, kind, value)
        if holder is not None:
            raise _identity_taken(field, holder["customer_id"])
    now = utcnow()
    customer_id = uuid7()
    await conn.execute(
        "INSERT INTO customers (tenant_id, id, display_name, attributes, timezone, language, "
        "version, created_at, updated_at) VALUES ($1, $2, $3, $4::jsonb, $5, $6, 1, $7, $7)",
        scope.tenant_id,
        customer_id,
        data.display_name,
        dumps(data.attributes),
        data.timezone,
        data.language,
        now,
    )
    # A microsecond apart, so that they list in the order given.
    identity_ids = [
        await _insert_identity(
            conn, scope, customer_id, kind, value, verified, field, now + timedelta(microseconds=i)
        )
        for i, (kind, value, verified, field) in enumerate(normalized)
    ]
    await add_timeline(
        conn,
        scope,
        customer_id=customer_id,
        identity_id=identity_ids[0],
        kind="customer.created",
        at=now,
        summary={
            "source": "api",
            "identities": [{"kind": k, "value": v} for k, v, *_ in normalized],
        },
    )
    return customer_id


async def bump_version(
    conn: asyncpg.Connection, scope: TenantScope, customer_id: uuid.UUID, now: datetime
) -> None:
    await conn.execute(
        "UPDATE customers SET version = version + 1, updated_at = $3 "
        "WHERE tenant_id = $1 AND id = $2",
        scope.tenant_id,
        customer_id,
        now,
    )


async def update(
    conn: asyncpg.Connection,
    scope: TenantScope,
    customer_id: uuid.UUID,
    data: CustomerUpdate,
    if_match: IfMatch,
) -> list[str]:
    """Apply a PATCH; returns the fields that changed (none: the version stays)."""
    row = await live_row(conn, scope, customer_id)
    if_match.check(row["version"])
    sent = data.model_fields_set
    changed: list[str] = []
    values: dict[str, Any] = {}
    for name in ("display_name", "timezone", "language"):
        if name in sent and getattr(data, name) != row[name]:
            values[name] = getattr(data, name)
            changed.append(name)
    if data.attributes is not None:
        current: dict[str, Any] = decode_json(row["attributes"])
        patched = dict(current)
        for key, value in data.attributes.items():
            if value is None:
                patched.pop(key, None)
            else:
                patched[key] = value
        if len(patched) > MAX_ATTRIBUTES:
            raise InvalidInput(
                f"body.attributes: the profile would have {len(patched)} attributes; "
                f"at most {MAX_ATTRIBUTES} (send null for keys to delete)",
                field="body.attributes",
                code="too-many-attributes",
            )
        if patched != current:
            values["attributes"] = dumps(patched)
            changed.extend(
                f"attributes.{k}"
                for k in sorted(set(current) | set(patched))
                if current.get(k, ...) != patched.get(k, ...)
            )
    if not values:
        return []
    sets = ", ".join(
        f"{name} = ${i}" + ("::jsonb" if name == "attributes" else "")
        for i, name in enumerate(values, start=3)
    )
    await conn.execute(
        f"UPDATE customers SET {sets}, version = version + 1, "  # noqa: S608
        f"updated_at = ${len(values) + 3} WHERE tenant_id = $1 AND id = $2",
        scope.tenant_id,
        customer_id,
        *values.values(),
        utcnow(),
    )
    return changed


async def record_change(
    conn: asyncpg.Connection,
    scope: TenantScope,
    customer_id: uuid.UUID,
    kind: str,
    actor: Actor,
    at: datetime,
    *,
    other: uuid.UUID | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO customer_changes (tenant_id, id, customer_id, kind, other_customer_id, "
        "detail, actor_type, actor_id, at) VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9)",
        scope.tenant_id,
        uuid7(),
        customer_id,
        kind,
        other,
        dumps(detail or {}),
        actor.type,
        actor.id,
        at,
    )


@dataclass(frozen=True)
class IdentityAdded:
    identity: IdentityRead
    created: bool


async def add_identity(
    conn: asyncpg.Connection,
    scope: TenantScope,
    customer_id: uuid.UUID,
    kind: str,
    value: str,
    verified: bool,
    actor: Actor,
) -> IdentityAdded:
    """Attach an identity; one the profile already has is answered as it is."""
    await live_row(conn, scope, customer_id)
    normalized = normalize_identity(kind, value, field="body.value")
    holder = await _holder(conn, scope, kind, normalized)
    if holder is not None and holder["customer_id"] != customer_id:
        raise _identity_taken("body.value", holder["customer_id"])
    created = holder is None
    if created:
        now = utcnow()
        identity_id = await _insert_identity(
            conn, scope, customer_id, kind, normalized, verified, "body.value", now
        )
        await bump_version(conn, scope, customer_id, now)
        detail = {"identity_id": str(identity_id), "kind": kind}
        await record_change(conn, scope, customer_id, "identity_added", actor, now, detail=detail)
    else:
        identity_id = holder["id"]  # type: ignore[index]
    row = await conn.fetchrow(
        f"SELECT {_IDENTITY} FROM customer_identities WHERE tenant_id = $1 AND id = $2",  # noqa: S608
        scope.tenant_id,
        identity_id,
    )
    return IdentityAdded(IdentityRead.model_validate(dict(row)), created)


async def remove_identity(
    conn: asyncpg.Connection,
    scope: TenantScope,
    customer_id: uuid.UUID,
    identity_id: uuid.UUID,
    if_match: IfMatch,
    actor: Actor,
) -> str:
    """Detach an identity (not the last one); returns its kind."""
    row = await live_row(conn, scope, customer_id, with_identities=True)
    if_match.check(row["version"])
    kinds = {
        r["id"]: r["kind"]
        for r in await conn.fetch(
            "SELECT id, kind FROM customer_identities WHERE tenant_id = $1 AND customer_id = $2",
            scope.tenant_id,
            customer_id,
        )
    }
    if identity_id not in kinds:
        raise NotFound(
            "The customer has no such identity.",
            code="identity-not-found",
            field="path.identity_id",
        )
    if len(kinds) == 1:
        raise Conflict(
            "This is the customer's only identity; add another one first.",
            code="last-identity",
            field="path.identity_id",
        )
    await conn.execute(
        "DELETE FROM customer_identities WHERE tenant_id = $1 AND id = $2",
        scope.tenant_id,
        identity_id,
    )
    now = utcnow()
    await bump_version(conn, scope, customer_id, now)
    detail = {"identity_id": str(identity_id), "kind": kinds[identity_id]}
    await record_change(conn, scope, customer_id, "identity_removed", actor, now, detail=detail)
    return kinds[identity_id]


@dataclass(frozen=True)
class ConsentSet:
    consent: ConsentRead
    previous: str | None
    changed: bool


async def set_consent(
    conn: asyncpg.Connection,
    scope: TenantScope,
    customer_id: uuid.UUID,
    channel: str,
    status: str,
    source: str | None,
) -> ConsentSet:
    """Record the customer's consent on a channel; the timeline gets ``consent.changed``
    when the status changes. The same status and source again changes nothing."""
    await live_row(conn, scope, customer_id)
    current = await conn.fetchrow(
        "SELECT channel, status, source, updated_at FROM customer_consents "
        "WHERE tenant_id = $1 AND customer_id = $2 AND channel = $3",
        scope.tenant_id,
        customer_id,
        channel,
    )
    if current is not None and (current["status"], current["source"]) == (status, source):
        return ConsentSet(ConsentRead.model_validate(dict(current)), status, False)
    now = utcnow()
    row = await conn.fetchrow(
        "INSERT INTO customer_consents (tenant_id, customer_id, channel, status, source, "
        "updated_at) VALUES ($1, $2, $3, $4, $5, $6) "
        "ON CONFLICT (tenant_id, customer_id, channel) DO UPDATE SET status = EXCLUDED.status, "
        "source = EXCLUDED.source, updated_at = EXCLUDED.updated_at "
        "RETURNING channel, status, source, updated_at",
        scope.tenant_id,
        customer_id,
        channel,
        status,
        source,
        now,
    )
    await bump_version(conn, scope, customer_id, now)
    previous = current["status"] if current is not None else None
    if previous != status:
        await add_timeline(
            conn,
            scope,
            customer_id=customer_id,
            kind="consent.changed",
            at=now,
            channel=channel,
            summary={"status": status, "previous": previous, "source": source},
        )
    return ConsentSet(ConsentRead.model_validate(dict(row)), previous, True)


async def change_rows(
    conn: asyncpg.Connection,
    scope: TenantScope,
    customer_id: uuid.UUID,
    limit: int,
    after_id: uuid.UUID | None,
) -> list[asyncpg.Record]:
    """The profile's change record, newest first (``limit + 1`` rows)."""
    if await _row(conn, scope, customer_id) is None:
        raise not_found()
    return list(
        await conn.fetch(
            "SELECT id, kind, other_customer_id, detail, actor_type, actor_id, at "
            "FROM customer_changes WHERE tenant_id = $1 AND customer_id = $2 "
            "AND ($3::uuid IS NULL OR id < $3) ORDER BY id DESC LIMIT $4",
            scope.tenant_id,
            customer_id,
            after_id,
            limit + 1,
        )
    )
