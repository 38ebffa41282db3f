"""Customer identity resolution and the timeline: the core every channel's ingress uses.

``resolve_identity`` turns what a channel sees (a phone number, an email address, a
visitor id, a provider's user id) into the tenant's one customer, creating the profile on
first contact; ``add_timeline`` writes an interaction to the customer's timeline in the
transaction of the interaction itself.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import asyncpg
import phonenumbers
from email_validator import EmailNotValidError, validate_email
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import InvalidInput
from app.db.base import utcnow, uuid7
from app.db.tenant import TenantScope
from app.routing.connection import raw
from app.routing.transitions import dumps

IdentityKind = Literal["phone", "email", "webchat", "whatsapp", "wechat", "messenger"]
IDENTITY_KIND_OF_CHANNEL: dict[str, IdentityKind] = {
    "webchat": "webchat",
    "email": "email",
    "sms": "phone",
    "voice": "phone",
    "whatsapp": "whatsapp",
    "wechat": "wechat",
    "messenger": "messenger",
}
_VISITOR = re.compile(r"^[A-Za-z0-9_-]{8,100}$")
_OPENID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_DIGITS = re.compile(r"^[0-9]{1,64}$")


def normalize_identity(kind: str, value: str, *, field: str = "value") -> str:
    """The one spelling of an identity (E.164, lower-case email, ...); 422 otherwise."""
    value = value.strip()
    if kind in ("phone", "whatsapp"):
        raw_value = value.removeprefix("whatsapp:")
        if kind == "whatsapp" and raw_value.isdigit():
            raw_value = "+" + raw_value  # a wa_id is the number without '+'
        try:
            number = phonenumbers.parse(raw_value, None)
        except phonenumbers.NumberParseException:
            number = None
        if number is None or not phonenumbers.is_possible_number(number):
            raise InvalidInput(
                f"{field}: not a phone number in international form (+<country><number>)",
                field=field,
            )
        e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        return e164
    if kind == "email":
        try:
            return validate_email(value, check_deliverability=False).normalized.lower()
        except EmailNotValidError as exc:
            raise InvalidInput(f"{field}: not an email address ({exc})", field=field) from None
    if kind == "webchat":
        if not _VISITOR.match(value):
            raise InvalidInput(
                f"{field}: a visitor id is 8-100 letters, digits, '-' or '_'", field=field
            )
        return value
    if kind == "wechat":
        if not _OPENID.match(value):
            raise InvalidInput(f"{field}: not a WeChat openid", field=field)
        return value
    if kind == "messenger":
        if not _DIGITS.match(value):
            raise InvalidInput(f"{field}: a Messenger id (PSID) is digits", field=field)
        return value
    raise InvalidInput(f"{field}: unknown identity kind {kind!r}", field=field)


@dataclass(frozen=True)
class ResolvedIdentity:
    customer_id: uuid.UUID
    identity_id: uuid.UUID
    created: bool
    kind: str = ""
    value: str = ""


async def resolve_identity(
    session: AsyncSession,
    scope: TenantScope,
    kind: str,
    value: str,
    *,
    display_name: str | None = None,
    field: str = "value",
) -> ResolvedIdentity:
    """The customer behind an identity, created (profile and identity) on first contact.
    Safe when two first messages race: one insert wins, the other reads it."""
    normalized = normalize_identity(kind, value, field=field)
    conn = await raw(session)
    return await resolve_on(conn, scope, kind, normalized, display_name=display_name)


async def resolve_on(
    conn: asyncpg.Connection,
    scope: TenantScope,
    kind: str,
    normalized: str,
    *,
    display_name: str | None = None,
) -> ResolvedIdentity:
    now = utcnow()
    found = await conn.fetchrow(
        "UPDATE customer_identities SET last_seen_at = $4 "
        "WHERE tenant_id = $1 AND kind = $2 AND value = $3 RETURNING id, customer_id",
        scope.tenant_id,
        kind,
        normalized,
        now,
    )
    if found is not None:
        if display_name:
            await conn.execute(
                "UPDATE customers SET display_name = $3, last_seen_at = $4 "
                "WHERE tenant_id = $1 AND id = $2 AND display_name IS NULL",
                scope.tenant_id,
                found["customer_id"],
                display_name[:200],
                now,
            )
        return ResolvedIdentity(found["customer_id"], found["id"], False, kind, normalized)
    customer_id, identity_id = uuid7(), uuid7()
    await conn.execute(
        "INSERT INTO customers (tenant_id, id, display_name, attributes, version, created_at, "
        "updated_at, last_seen_at) VALUES ($1, $2, $3, '{}'::jsonb, 1, $4, $4, $4)",
        scope.tenant_id,
        customer_id,
        display_name[:200] if display_name else None,
        now,
    )
    inserted = await conn.fetchval(
        "INSERT INTO customer_identities (tenant_id, id, customer_id, kind, value, verified, "
        "created_at, last_seen_at) VALUES ($1, $2, $3, $4, $5, false, $6, $6) "
        "ON CONFLICT (tenant_id, kind, value) DO NOTHING RETURNING id",
        scope.tenant_id,
        identity_id,
        customer_id,
        kind,
        normalized,
        now,
    )
    if inserted is None:  # another transaction created it first: use theirs
        await conn.execute(
            "DELETE FROM customers WHERE tenant_id = $1 AND id = $2", scope.tenant_id, customer_id
        )
        row = await conn.fetchrow(
            "SELECT id, customer_id FROM customer_identities "
            "WHERE tenant_id = $1 AND kind = $2 AND value = $3",
            scope.tenant_id,
            kind,
            normalized,
        )
        assert row is not None
        return ResolvedIdentity(row["customer_id"], row["id"], False, kind, normalized)
    await add_timeline(
        conn,
        scope,
        customer_id=customer_id,
        identity_id=identity_id,
        kind="customer.created",
        at=now,
        summary={"identity": {"kind": kind, "value": normalized}},
    )
    return ResolvedIdentity(customer_id, identity_id, True, kind, normalized)


async def add_timeline(
    conn: asyncpg.Connection,
    scope: TenantScope,
    *,
    customer_id: uuid.UUID,
    kind: str,
    at: datetime,
    identity_id: uuid.UUID | None = None,
    conversation_id: uuid.UUID | None = None,
    channel: str | None = None,
    ref_id: uuid.UUID | None = None,
    summary: dict[str, Any] | None = None,
) -> None:
    """Append one interaction to the customer's timeline (same transaction)."""
    await conn.execute(
        "INSERT INTO timeline_events (tenant_id, id, customer_id, identity_id, at, kind, "
        "channel, conversation_id, ref_id, summary) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb)",
        scope.tenant_id,
        uuid7(),
        customer_id,
        identity_id,
        at,
        kind,
        channel,
        conversation_id,
        ref_id,
        dumps(summary or {}),
    )
