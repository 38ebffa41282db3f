"""The usage ledger. Call ``record`` inside the business change's own transaction."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from app.core.errors import Conflict, InvalidInput
from app.db.base import utcnow, uuid7
from app.db.tenant import TenantScope
from app.usage.models import UsageEvent


class Meter(enum.StrEnum):
    agent_seat_hours = "agent_seat_hours"
    handled_minutes_voice = "handled_minutes.voice"
    handled_minutes_video = "handled_minutes.video"
    handled_minutes_chat = "handled_minutes.chat"
    handled_minutes_email = "handled_minutes.email"
    handled_minutes_sms = "handled_minutes.sms"
    handled_minutes_messaging = "handled_minutes.messaging"
    messages = "messages"
    # Conversation messages per channel (inbound and outbound; direction in attributes).
    messages_webchat = "messages.webchat"
    messages_email = "messages.email"
    messages_sms = "messages.sms"
    messages_whatsapp = "messages.whatsapp"
    messages_wechat = "messages.wechat"
    messages_messenger = "messages.messenger"
    phone_number_days = "phone_number_days"
    recording_storage_gb_days = "recording_storage_gb_days"
    crowd_minutes = "crowd_minutes"


@dataclass(frozen=True)
class Recorded:
    event: UsageEvent
    created: bool  # False: an earlier event with the same idempotency key stands


def _checked(
    meter: Meter | str, quantity: Decimal | int, occurred_at: datetime, idempotency_key: str
) -> tuple[Meter, Decimal]:
    """The meter and quantity of a usage event, or 422 naming what is wrong."""
    try:
        known = Meter(meter)
    except ValueError:
        raise InvalidInput(f"unknown meter '{meter}'", field="meter") from None
    qty = Decimal(quantity)
    if not qty.is_finite() or qty < 0:
        raise InvalidInput("quantity must be a finite number >= 0", field="quantity")
    if occurred_at.tzinfo is None:
        raise InvalidInput("occurred_at must carry a time zone", field="occurred_at")
    if not idempotency_key or len(idempotency_key) > 200:
        raise InvalidInput("idempotency_key must be 1..200 characters", field="idempotency_key")
    return known, qty


async def record(
    session: AsyncSession,
    scope: TenantScope,
    *,
    meter: Meter | str,
    quantity: Decimal | int,
    occurred_at: datetime,
    idempotency_key: str,
    attributes: dict[str, Any] | None = None,
) -> Recorded:
    """Append one usage event; a replay of the same key returns the first event.

    A replay that disagrees with the first (other meter or quantity) is a bug in the
    caller and raises ``usage-idempotency-conflict`` rather than being silently dropped.
    """
    meter, qty = _checked(meter, quantity, occurred_at, idempotency_key)
    values = {
        "tenant_id": scope.tenant_id,
        "id": uuid7(),
        "meter": meter.value,
        "quantity": qty,
        "occurred_at": occurred_at,
        "recorded_at": utcnow(),
        "idempotency_key": idempotency_key,
        "attributes": attributes or {},
    }
    ins = (
        insert(UsageEvent.__table__)  # type: ignore[attr-defined]
        .values(**values)
        .on_conflict_do_nothing(index_elements=["tenant_id", "idempotency_key"])
        .returning(UsageEvent.__table__.c.id)  # type: ignore[attr-defined]
    )
    inserted = (await session.execute(ins)).first()
    existing = (
        await session.execute(
            select(UsageEvent)
            .where(
                UsageEvent.tenant_id == scope.tenant_id,
                UsageEvent.idempotency_key == idempotency_key,
            )
            .execution_options(populate_existing=True)
        )
    ).scalar_one()
    if inserted is None and (existing.meter != meter.value or existing.quantity != qty):
        raise Conflict(
            "This idempotency key was used for a different usage event.",
            code="usage-idempotency-conflict",
        )
    return Recorded(existing, inserted is not None)


@dataclass(frozen=True)
class UsageRow:
    """A usage event checked as :func:`record` checks it, for a caller that writes it in
    a statement of its own (``INSERT ... ON CONFLICT (tenant_id, idempotency_key) DO
    NOTHING``) and, when that inserted nothing, calls :func:`record_on` with the same
    values to compare with the first event."""

    meter: str
    quantity: Decimal
    idempotency_key: str
    attributes_json: str


def usage_row(
    meter: Meter | str,
    quantity: Decimal | int,
    occurred_at: datetime,
    idempotency_key: str,
    attributes: dict[str, Any] | None = None,
) -> UsageRow:
    known, qty = _checked(meter, quantity, occurred_at, idempotency_key)
    return UsageRow(known.value, qty, idempotency_key, json.dumps(attributes or {}))


async def record_on(
    conn: asyncpg.Connection,
    scope: TenantScope,
    *,
    meter: Meter | str,
    quantity: Decimal,
    occurred_at: datetime,
    idempotency_key: str,
    attributes: dict[str, Any] | None = None,
) -> bool:
    """:func:`record` on a raw connection (routing code runs on asyncpg); the same
    checks, the same once-only key. True when this call wrote the event."""
    meter, quantity = _checked(meter, quantity, occurred_at, idempotency_key)
    inserted = await conn.fetchval(
        "INSERT INTO usage_events (tenant_id, id, meter, quantity, occurred_at, recorded_at, "
        "idempotency_key, attributes) VALUES ($1, $2, $3, $4, $5, now(), $6, $7::jsonb) "
        "ON CONFLICT (tenant_id, idempotency_key) DO NOTHING RETURNING id",
        scope.tenant_id,
        uuid7(),
        meter.value,
        quantity,
        occurred_at,
        idempotency_key,
        json.dumps(attributes or {}),
    )
    if inserted is not None:
        return True
    first = await conn.fetchrow(
        "SELECT meter, quantity FROM usage_events WHERE tenant_id = $1 AND idempotency_key = $2",
        scope.tenant_id,
        idempotency_key,
    )
    if first is not None and (first["meter"] != meter.value or first["quantity"] != quantity):
        raise Conflict(
            "This idempotency key was used for a different usage event.",
            code="usage-idempotency-conflict",
        )
    return False
