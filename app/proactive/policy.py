"""Whether the tenant may reach out to a customer now, on its own initiative: the one
check every proactive contact passes, the web chat invitation and the outbound SMS,
email or WhatsApp message alike (docs/decisions/0016).

Three platform-wide rules, in the order a hold reports them (the longest-lasting first,
so the reason names what actually binds):

1. consent - web chat (the customer is on the tenant's site) is opt-out: held only when
   the customer revoked consent for it. Every other channel (sms, email, whatsapp,
   wechat, messenger, voice) is opt-in: it needs a ``granted`` consent for that channel.
2. frequency cap - at most ``proactive_max_contacts`` proactive contacts per customer in
   ``proactive_window_days``, all channels together.
3. quiet hours - none between ``proactive_quiet_start`` and ``proactive_quiet_end`` in
   the customer's local time (the profile's timezone, else the one the widget reported,
   else UTC).

Tenants cannot loosen these: they are Settings, not tenant data.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg

from app.config import Settings, get_settings
from app.customers.profiles import not_found as customer_not_found
from app.db.base import uuid7
from app.db.tenant import TenantScope
from app.routing.transitions import dumps

# Channels a customer may be contacted on without having opted in (until they opt out).
OPT_OUT_CHANNELS = frozenset({"webchat"})

CONTACT, HOLD = "contact", "hold"
NO_CONSENT, FREQUENCY_CAP, QUIET_HOURS = "no-consent", "frequency-cap", "quiet-hours"
ALLOWED = "allowed"


@dataclass(frozen=True)
class Limits:
    max_contacts: int
    window: timedelta
    quiet_start: time
    quiet_end: time

    @classmethod
    def of(cls, settings: Settings | None = None) -> Limits:
        s = settings or get_settings()
        return cls(
            max_contacts=s.proactive_max_contacts,
            window=timedelta(days=s.proactive_window_days),
            quiet_start=time.fromisoformat(s.proactive_quiet_start),
            quiet_end=time.fromisoformat(s.proactive_quiet_end),
        )

    def is_quiet(self, local: time) -> bool:
        start, end = self.quiet_start, self.quiet_end
        if start == end:
            return False
        if start < end:
            return start <= local < end
        return local >= start or local < end  # the window wraps midnight


def zone_of(name: Any) -> ZoneInfo | None:
    if not isinstance(name, str) or not name or len(name) > 64:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


async def lock_customer(
    conn: asyncpg.Connection, scope: TenantScope, customer_id: uuid.UUID
) -> None:
    """Serialise proactive decisions about one customer until the transaction ends, so two
    page views (or an invitation and an SMS) racing cannot both take the last place
    under the cap. Re-entrant within a transaction."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 16))",
        f"proactive:{scope.tenant_id}:{customer_id}",
    )


async def may_contact(
    conn: asyncpg.Connection,
    scope: TenantScope,
    *,
    customer_id: uuid.UUID,
    channel: str,
    now: datetime,
    settings: Settings | None = None,
    fallback_timezone: str | None = None,
) -> tuple[bool, str, dict[str, Any]]:
    """``(allowed, reason, detail)``: reason is ``allowed``, or why to hold back
    (``no-consent``, ``frequency-cap``, ``quiet-hours``). ``detail`` has every check's
    inputs whatever the outcome. ``fallback_timezone``: the one the widget reported,
    used when the profile has none. Takes the customer's decision lock (see
    :func:`lock_customer`): record the decision in the same transaction."""
    limits = Limits.of(settings)
    customer = await conn.fetchrow(
        "SELECT timezone FROM customers WHERE tenant_id = $1 AND id = $2",
        scope.tenant_id,
        customer_id,
    )
    if customer is None:
        raise customer_not_found()
    await lock_customer(conn, scope, customer_id)
    consent = await conn.fetchval(
        "SELECT status FROM customer_consents WHERE tenant_id = $1 AND customer_id = $2 "
        "AND channel = $3",
        scope.tenant_id,
        customer_id,
        channel,
    )
    contacts = await conn.fetchval(
        "SELECT count(*) FROM proactive_decisions WHERE tenant_id = $1 AND customer_id = $2 "
        "AND decision = 'contact' AND at > $3",
        scope.tenant_id,
        customer_id,
        now - limits.window,
    )
    zone, source = zone_of(customer["timezone"]), "customer"
    if zone is None:
        zone, source = zone_of(fallback_timezone), "page_view"
    if zone is None:
        zone, source = ZoneInfo("UTC"), "default"
    local = now.astimezone(zone)
    opt_in = channel not in OPT_OUT_CHANNELS
    detail: dict[str, Any] = {
        "consent": consent,
        "consent_rule": "opt-in" if opt_in else "opt-out",
        "contacts_in_window": int(contacts),
        "max_contacts": limits.max_contacts,
        "window_days": limits.window.days,
        "local_time": local.strftime("%H:%M"),
        "timezone": str(zone.key),
        "timezone_source": source,
        "quiet_hours": f"{limits.quiet_start:%H:%M}-{limits.quiet_end:%H:%M}",
    }
    if consent == "revoked" or (opt_in and consent != "granted"):
        return False, NO_CONSENT, detail
    if contacts >= limits.max_contacts:
        return False, FREQUENCY_CAP, detail
    if limits.is_quiet(local.time()):
        return False, QUIET_HOURS, detail
    return True, ALLOWED, detail


async def record_decision(
    conn: asyncpg.Connection,
    scope: TenantScope,
    *,
    customer_id: uuid.UUID,
    rule_id: uuid.UUID | None,
    channel: str,
    decision: str,
    reason: str,
    detail: dict[str, Any],
    at: datetime,
) -> asyncpg.Record:
    """Write one decision (contact or hold, with its reason) and return the row."""
    row = await conn.fetchrow(
        "INSERT INTO proactive_decisions (tenant_id, id, customer_id, rule_id, channel, "
        "decision, reason, detail, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9) "
        "RETURNING id, customer_id, rule_id, channel, decision, reason, detail, at",
        scope.tenant_id,
        uuid7(),
        customer_id,
        rule_id,
        channel,
        decision,
        reason,
        dumps(detail),
        at,
    )
    assert row is not None
    return row
