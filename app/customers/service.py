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
    name = display_name[:200] if display_name else None
    customer_id, identity_id = uuid7(), uuid7()
    # One round trip: the identity seen again (and a name it lacked), or on first contact
    # the profile, the identity and "customer.created" on the timeline.
    row = await conn.fetchrow(
        _RESOLVE,
        scope.tenant_id,
        kind,
        normalized,
        now,
        name,
        customer_id,
        identity_id,
        uuid7(),
        dumps({"identity": {"kind": kind, "value": normalized}}),
    )
    if row is not None:
        return ResolvedIdentity(row["customer_id"], row["id"], row["created"], kind, normalized)
    # Another transaction created the identity first (its insert committed after this
    # statement's snapshot): drop the profile made for nothing and use theirs.
    await conn.execute(
        "DELETE FROM customers WHERE tenant_id = $1 AND id = $2", scope.tenant_id, customer_id
    )
    theirs = await conn.fetchrow(
        "SELECT id, customer_id FROM customer_identities "
        "WHERE tenant_id = $1 AND kind = $2 AND value = $3",
        scope.tenant_id,
        kind,
        normalized,
    )
    assert theirs is not None
    return ResolvedIdentity(theirs["customer_id"], theirs["id"], False, kind, normalized)


_RESOLVE = """
WITH found AS (
  UPDATE customer_identities SET last_seen_at = $4
   WHERE tenant_id = $1 AND kind = $2 AND value = $3
  RETURNING id, customer_id
), named AS (
  UPDATE customers SET display_name = $5, last_seen_at = $4
   WHERE tenant_id = $1 AND $5::text IS NOT NULL AND display_name IS NULL
     AND id = (SELECT customer_id FROM found)
), customer AS (
  INSERT INTO customers (tenant_id, id, display_name, attributes, version, created_at,
      updated_at, last_seen_at)
  SELECT $1, $6, $5, '{}'::jsonb, 1, $4, $4, $4 WHERE NOT EXISTS (SELECT 1 FROM found)
  RETURNING id
), identity AS (
  INSERT INTO customer_identities (tenant_id, id, customer_id, kind, value, verified,
      created_at, last_seen_at)
  SELECT $1, $7, customer.id, $2, $3, false, $4, $4 FROM customer
  ON CONFLICT (tenant_id, kind, value) DO NOTHING
  RETURNING id, customer_id
), timeline AS (
  INSERT INTO timeline_events (tenant_id, id, customer_id, identity_id, at, kind, summary)
  SELECT $1, $8, identity.customer_id, identity.id, $4, 'customer.created', $9::jsonb
    FROM identity
)
SELECT id, customer_id, false AS created FROM found
UNION ALL
SELECT id, customer_id, true AS created FROM identity
"""


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
