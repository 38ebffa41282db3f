"""The proactive engine: when a web chat visitor's page view matches one of the tenant's
rules, invite them to chat or offer a callback, unless the platform's limits say to
hold back (:mod:`app.proactive.policy`). Every decision is recorded with its reason.

The web chat widget API calls :func:`evaluate_visit` on each page view (and may call it
again later for the same page view: visit time grows), and :func:`request_callback`
when the visitor accepts a callback offer.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.core.errors import Conflict, InvalidInput, NotFound
from app.customers.profiles import not_found as customer_not_found
from app.customers.service import add_timeline, normalize_identity
from app.db.base import utcnow, uuid7
from app.db.tenant import TenantScope
from app.proactive import repository
from app.proactive.policy import (
    CONTACT,
    HOLD,
    lock_customer,
    may_contact,
    record_decision,
)
from app.routing.connection import raw
from app.routing.snapshots import decode_json

# A visit is the visitor's run of page views with no gap longer than this between them.
VISIT_GAP = timedelta(minutes=30)
# pages_seen counts at most this many pages (rules ask for at most 1,000).
MAX_VISIT_PAGES = 1000
# How far the walk to a visit's start may go: each hop crosses at most one VISIT_GAP,
# and two hops always cross more than one, so this is over ten days of activity with
# no 30-minute pause (a bot); such a visit counts from where the walk stopped.
MAX_VISIT_HOPS = 1000
RULE_MATCHED = "rule-matched"


@dataclass(frozen=True)
class Invitation:
    """What the widget shows: an invitation to chat, or a callback offer."""

    decision_id: uuid.UUID
    rule_id: uuid.UUID
    action: str  # invite_chat | offer_callback
    message: str


@dataclass(frozen=True)
class Visit:
    started_at: datetime
    pages_seen: int


@dataclass(frozen=True)
class Facts:
    """What rules are evaluated against."""

    pages_seen: int
    url: str
    visit_seconds: float
    page_attributes: dict[str, Any]
    customer_attributes: dict[str, Any]


# The visit's start, by hops back in time: from a time t, the earliest page view in
# [t - VISIT_GAP, t) is in the same visit (every gap between it and t is at most
# VISIT_GAP), so the walk jumps there; it stops where that window is empty. Each hop
# is one probe of ix_page_views_tenant_id_customer_id_at, so the cost follows the
# visit's length in gap windows, not the visitor's history or the visit's page count.
# (A LAG() over the visitor's page views would read the whole history every time.)
# customer_id is there for the index: an identity's page views all belong to its
# customer (merge and split move them together). The window's start is a column of the
# walk, not an expression in the probe: under row-level security only leakproof
# comparisons become index conditions, and timestamptz - interval is not leakproof.
_CURRENT_VISIT = """
WITH RECURSIVE walk (at, window_start, hops) AS (
    SELECT $4::timestamptz, $4::timestamptz - $5::interval, 0
  UNION ALL
    SELECT earliest.at, earliest.at - $5::interval, w.hops + 1
      FROM walk w
     CROSS JOIN LATERAL (
            SELECT p.at FROM page_views p
             WHERE p.tenant_id = $1 AND p.customer_id = $2 AND p.identity_id = $3
               AND p.at >= w.window_start AND p.at < w.at
             ORDER BY p.at LIMIT 1) AS earliest
     WHERE w.hops < $6
), start AS (
    SELECT min(at) AS at FROM walk
)
SELECT start.at AS started_at,
       (SELECT count(*) FROM (
            SELECT FROM page_views p
             WHERE p.tenant_id = $1 AND p.customer_id = $2 AND p.identity_id = $3
               AND p.at >= start.at AND p.at <= $4
             LIMIT $7) AS visit_pages) AS pages_seen
  FROM start
"""


async def current_visit(
    conn: asyncpg.Connection,
    scope: TenantScope,
    *,
    customer_id: uuid.UUID,
    identity_id: uuid.UUID,
    upto: datetime,
) -> Visit:
    """The visit the page view at ``upto`` belongs to: the visitor's (identity's) page
    views up to ``upto`` back to the first gap longer than :data:`VISIT_GAP` (a gap of
    exactly VISIT_GAP does not end a visit; views at the same instant all count).
    ``pages_seen`` counts them, at least 1 and at most :data:`MAX_VISIT_PAGES`. One
    query (``_CURRENT_VISIT``)."""
    row = await conn.fetchrow(
        _CURRENT_VISIT,
        scope.tenant_id,
        customer_id,
        identity_id,
        upto,
        VISIT_GAP,
        MAX_VISIT_HOPS,
        MAX_VISIT_PAGES,
    )
    assert row is not None
    return Visit(started_at=row["started_at"], pages_seen=max(int(row["pages_seen"]), 1))


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _attribute_holds(cond: dict[str, Any], facts: Facts) -> bool:
    name, op, want = cond["name"], cond["op"], cond["value"]
    if name in facts.page_attributes:
        have = facts.page_attributes[name]
    elif name in facts.customer_attributes:
        have = facts.customer_attributes[name]
    else:
        return False
    if have is None:
        return False
    if isinstance(want, str):  # eq / ne as text
        text = have if isinstance(have, str) else None
        if text is None:
            return False
        return (text == want) == (op == "eq")
    number = _number(have)
    if number is None:
        return op == "ne"
    target = float(want)
    return {
        "eq": number == target,
        "ne": number != target,
        "gt": number > target,
        "gte": number >= target,
        "lt": number < target,
        "lte": number <= target,
    }[op]


def matches(conditions: dict[str, Any], facts: Facts) -> bool:
    """All of the rule's conditions hold for this visit."""
    if (n := conditions.get("min_pages_seen")) is not None and facts.pages_seen < n:
        return False
    if (part := conditions.get("url_contains")) is not None and (
        part.lower() not in facts.url.lower()
    ):
        return False
    if (secs := conditions.get("min_dwell_seconds")) is not None and facts.visit_seconds < secs:
        return False
    cond = conditions.get("attribute")
    return cond is None or _attribute_holds(cond, facts)


async def callback_queue(
    conn: asyncpg.Connection, scope: TenantScope, channel_id: uuid.UUID
) -> uuid.UUID | None:
    """Where a callback offered in this webchat channel waits: the channel's queue
    (config ``queue_id``) when that queue also takes voice; None otherwise."""
    config = await conn.fetchval(
        "SELECT config FROM channels WHERE tenant_id = $1 AND id = $2 AND type = 'webchat'",
        scope.tenant_id,
        channel_id,
    )
    queue_ref = decode_json(config).get("queue_id") if config is not None else None
    if not queue_ref:
        return None
    try:
        queue_id = uuid.UUID(str(queue_ref))
    except ValueError:
        return None
    takes_voice = await conn.fetchval(
        "SELECT 'voice' = ANY(channels) FROM queues WHERE tenant_id = $1 AND id = $2",
        scope.tenant_id,
        queue_id,
    )
    return queue_id if takes_voice else None


async def evaluate_visit(
    session: AsyncSession,
    scope: TenantScope,
    *,
    customer_id: uuid.UUID,
    identity_id: uuid.UUID,
    channel_id: uuid.UUID,
    page_view_id: uuid.UUID,
    now: datetime | None = None,
    settings: Settings | None = None,
) -> Invitation | None:
    """Evaluate the tenant's enabled rules for this visitor's page view, in priority
    order. The first that matches is checked against the platform's limits
    (:func:`app.proactive.policy.may_contact`) and the decision recorded: an invitation
    when allowed (also on the customer's timeline, ``proactive.invited``), None when
    held. Nothing new is recorded when that rule already invited this visitor in this
    visit, or was held for the same reason (the decision log is not flooded on every
    page view). An ``offer_callback`` rule is passed over in a channel whose queue
    cannot take the callback (:func:`callback_queue`)."""
    conn = await raw(session)
    now = now or utcnow()
    view = await conn.fetchrow(
        "SELECT at, url, attributes FROM page_views WHERE tenant_id = $1 AND id = $2 "
        "AND customer_id = $3 AND identity_id = $4 AND channel_id = $5",
        scope.tenant_id,
        page_view_id,
        customer_id,
        identity_id,
        channel_id,
    )
    if view is None:
        raise NotFound("No such page view of this visitor.", code="page-view-not-found")
    rules = await repository.enabled_rules(conn, scope, channel_id)
    if not rules:
        return None  # the common case, on every page view: nothing more to read
    customer = await conn.fetchrow(
        "SELECT attributes FROM customers WHERE tenant_id = $1 AND id = $2",
        scope.tenant_id,
        customer_id,
    )
    if customer is None:
        raise customer_not_found()
    visit = await current_visit(
        conn, scope, customer_id=customer_id, identity_id=identity_id, upto=view["at"]
    )
    page_attributes = decode_json(view["attributes"]) or {}
    facts = Facts(
        pages_seen=visit.pages_seen,
        url=view["url"],
        visit_seconds=max(0.0, (now - visit.started_at).total_seconds()),
        page_attributes=page_attributes,
        customer_attributes=decode_json(customer["attributes"]) or {},
    )
    rule = None
    takes_callbacks: bool | None = None  # read once, when an offer_callback rule matches
    for candidate in rules:
        if not matches(decode_json(candidate["conditions"]), facts):
            continue
        if candidate["action"] == "offer_callback":
            if takes_callbacks is None:
                takes_callbacks = await callback_queue(conn, scope, channel_id) is not None
            if not takes_callbacks:
                continue
        rule = candidate
        break
    if rule is None:
        return None
    await lock_customer(conn, scope, customer_id)
    previous = await conn.fetchrow(
        "SELECT decision, reason FROM proactive_decisions WHERE tenant_id = $1 "
        "AND customer_id = $2 AND rule_id = $3 AND at >= $4 AND detail->>'identity_id' = $5 "
        "ORDER BY at DESC, id DESC LIMIT 1",
        scope.tenant_id,
        customer_id,
        rule["id"],
        visit.started_at,
        str(identity_id),
    )
    if previous is not None and previous["decision"] == CONTACT:
        return None
    tz_hint = page_attributes.get("timezone")
    allowed, reason, detail = await may_contact(
        conn,
        scope,
        customer_id=customer_id,
        channel="webchat",
        now=now,
        settings=settings,
        fallback_timezone=tz_hint if isinstance(tz_hint, str) else None,
    )
    if not allowed and previous is not None and previous["reason"] == reason:
        return None
    detail |= {
        "rule_name": rule["name"],
        "action": rule["action"],
        "identity_id": str(identity_id),
        "channel_id": str(channel_id),
        "page_view_id": str(page_view_id),
        "visit_started_at": visit.started_at.isoformat(),
        "pages_seen": visit.pages_seen,
        "visit_seconds": round(facts.visit_seconds, 1),
    }
    decision = await record_decision(
        conn,
        scope,
        customer_id=customer_id,
        rule_id=rule["id"],
        channel="webchat",
        decision=CONTACT if allowed else HOLD,
        reason=RULE_MATCHED if allowed else reason,
        detail=detail,
        at=now,
    )
    if not allowed:
        return None
    await add_timeline(
        conn,
        scope,
        customer_id=customer_id,
        identity_id=identity_id,
        kind="proactive.invited",
        at=now,
        channel="webchat",
        ref_id=decision["id"],
        summary={
            "rule_id": str(rule["id"]),
            "rule_name": rule["name"],
            "action": rule["action"],
            "message": rule["message"],
            "url": view["url"],
        },
    )
    return Invitation(decision["id"], rule["id"], rule["action"], rule["message"])


async def request_callback(
    session: AsyncSession,
    scope: TenantScope,
    plan: str,
    *,
    customer_id: uuid.UUID,
    identity_id: uuid.UUID,
    phone: str,
    channel_id: uuid.UUID,
    decision_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """The visitor accepted a callback offer: put a voice callback in line for them and
    return its contact id. ``phone`` (``body.phone``) must be an international number;
    it becomes one of the customer's phone identities unless another profile already
    has it (no silent merge: the callback still goes to the number). The contact waits
    in the webchat channel's queue, which must take voice (:func:`callback_queue`);
    ``decision_id``, when given, is the offer's decision for this customer. A visitor
    who asks again while their callback still waits gets the same contact."""
    from app.routing.contacts import enqueue, make_callback
    from app.routing.schemas import ContactCreate

    number = normalize_identity("phone", phone, field="body.phone")
    conn = await raw(session)
    exists = await conn.fetchval(
        "SELECT true FROM customers WHERE tenant_id = $1 AND id = $2",
        scope.tenant_id,
        customer_id,
    )
    if not exists:
        raise customer_not_found()
    if decision_id is not None:
        offered = await conn.fetchval(
            "SELECT true FROM proactive_decisions WHERE tenant_id = $1 AND id = $2 "
            "AND customer_id = $3 AND decision = 'contact'",
            scope.tenant_id,
            decision_id,
            customer_id,
        )
        if not offered:
            raise InvalidInput(
                "body.decision_id: no such invitation for this visitor",
                code="unknown-reference",
                field="body.decision_id",
            )
    queue_id = await callback_queue(conn, scope, channel_id)
    if queue_id is None:
        raise Conflict(
            "This chat channel takes no callbacks: its queue must also take voice.",
            code="callback-unavailable",
        )
    await lock_customer(conn, scope, customer_id)
    waiting = await conn.fetchval(
        "SELECT id FROM contacts WHERE tenant_id = $1 AND customer_ref = $2 "
        "AND mode = 'callback' AND state IN ('queued', 'offered') "
        "ORDER BY enqueued_at DESC LIMIT 1",
        scope.tenant_id,
        str(customer_id),
    )
    if waiting is not None:
        return uuid.UUID(str(waiting))
    await conn.execute(
        "INSERT INTO customer_identities (tenant_id, id, customer_id, kind, value, verified, "
        "created_at, last_seen_at) VALUES ($1, $2, $3, 'phone', $4, false, $5, $5) "
        "ON CONFLICT (tenant_id, kind, value) DO NOTHING",
        scope.tenant_id,
        uuid7(),
        customer_id,
        number,
        utcnow(),
    )
    holder = await conn.fetchrow(
        "SELECT id, customer_id FROM customer_identities WHERE tenant_id = $1 "
        "AND kind = 'phone' AND value = $2",
        scope.tenant_id,
        number,
    )
    phone_identity = holder["id"] if holder and holder["customer_id"] == customer_id else None
    attributes: dict[str, Any] = {
        "source": "proactive",
        "customer_id": str(customer_id),
        "channel_id": str(channel_id),
        "visitor_identity_id": str(identity_id),
    }
    if decision_id is not None:
        attributes["proactive_decision_id"] = str(decision_id)
    data = ContactCreate(
        channel="voice",
        queue_id=queue_id,
        customer_ref=str(customer_id),
        attributes=attributes,
    )
    contact_id = await enqueue(session, scope, plan, data)
    await make_callback(session, scope, contact_id, number)
    await add_timeline(
        conn,
        scope,
        customer_id=customer_id,
        identity_id=phone_identity or identity_id,
        kind="callback.requested",
        at=utcnow(),
        channel="voice",
        ref_id=contact_id,
        summary={
            "phone": number,
            "queue_id": str(queue_id),
            "decision_id": str(decision_id) if decision_id else None,
        },
    )
    return contact_id
