"""The engine on page views: rules in priority order, conditions on the visit, the
platform's limits (frequency cap, quiet hours in the customer's timezone, consent),
one decision per rule and visit, and every decision recorded with its reason."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from tests.proactive.conftest import MINUTE, at, make_world

NOON = at("2026-11-24T12:00:00+00:00")  # a Tuesday, outside quiet hours in UTC
SHOP = "https://www.acme.example/shop"
CHECKOUT = "https://www.acme.example/Checkout/step-1"


async def test_matching_rule_invites_and_records_why(app: Any, client: httpx.AsyncClient) -> None:
    world = await make_world(app, client)
    rule = await world.rule(
        name="Checkout help",
        channel_id=str(world.channel_id),
        conditions={
            "min_pages_seen": 2,
            "url_contains": "/checkout",
            "min_dwell_seconds": 60,
            "attribute": {"name": "cart_value", "op": "gte", "value": 100},
        },
        message="Need a hand with your order?",
        priority=5,
    )
    await world.rule(name="Catch-all", conditions={"min_pages_seen": 1}, priority=50)
    await world.rule(name="Off", enabled=False, conditions={"min_pages_seen": 1}, priority=1)
    visitor = await world.visitor(timezone="Europe/Paris")

    first = await world.view(visitor, NOON, SHOP)
    # Only the catch-all matches the first page (the disabled rule never runs).
    assert first is not None and first.action == "invite_chat"
    assert first.message == "Can we help?"

    # Second page, at checkout, with a big cart, 90 s into the visit: the checkout rule
    # (priority 5) matches before the catch-all.
    invitation = await world.view(
        visitor, NOON + timedelta(seconds=90), CHECKOUT, {"cart_value": "149.90"}
    )
    assert invitation is not None
    assert (str(invitation.rule_id), invitation.action, invitation.message) == (
        rule["id"],
        "invite_chat",
        "Need a hand with your order?",
    )
    decisions = await world.decisions(visitor)
    assert [(d["decision"], d["reason"]) for d in decisions] == [
        ("contact", "rule-matched"),
        ("contact", "rule-matched"),
    ]
    last = decisions[-1]
    assert last["id"] == invitation.decision_id
    detail = _json(last["detail"])
    assert detail["pages_seen"] == 2 and detail["visit_seconds"] == 90.0
    assert (detail["timezone"], detail["local_time"]) == ("Europe/Paris", "13:01")
    assert detail["contacts_in_window"] == 1 and detail["max_contacts"] == 3
    timeline = await world.rows(
        "SELECT kind, channel, ref_id, summary FROM timeline_events WHERE customer_id = $1 "
        "AND kind = 'proactive.invited' ORDER BY at",
        visitor.customer_id,
    )
    assert [(e["channel"], e["ref_id"]) for e in timeline][-1] == (
        "webchat",
        invitation.decision_id,
    )

    # The operator sees the decisions and why.
    r = await client.get(
        f"/v1/proactive-decisions?customer_id={visitor.customer_id}&decision=contact",
        headers=world.headers,
    )
    assert r.status_code == 200
    items = r.json()["items"]
    assert items[0]["rule_id"] == rule["id"]
    assert items[0]["reason"] == "rule-matched" and items[0]["detail"]["pages_seen"] == 2


async def test_conditions_that_do_not_hold_decide_nothing(
    app: Any, client: httpx.AsyncClient
) -> None:
    world = await make_world(app, client)
    await world.rule(
        conditions={"attribute": {"name": "tier", "op": "eq", "value": "gold"}, "min_pages_seen": 3}
    )
    await world.rule(conditions={"attribute": {"name": "cart_value", "op": "gt", "value": 500}})
    await world.rule(conditions={"min_dwell_seconds": 600})
    gold = await world.visitor(attributes={"tier": "gold", "cart_value": 120})
    assert await world.view(gold, NOON, SHOP) is None
    assert await world.view(gold, NOON + MINUTE, SHOP) is None
    # An hour's gap starts a new visit: the page count starts again.
    assert await world.view(gold, NOON + timedelta(hours=1), SHOP) is None
    assert await world.view(gold, NOON + timedelta(hours=1, minutes=1), SHOP) is None
    assert await world.decisions(gold) == []
    # Third page of the new visit: the profile's tier (no page attribute) matches.
    invitation = await world.view(gold, NOON + timedelta(hours=1, minutes=2), SHOP)
    assert invitation is not None
    # The page's attribute wins over the profile's: a cart of 700 on the page.
    rich = await world.visitor(attributes={"cart_value": 10})
    assert await world.view(rich, NOON, SHOP, {"cart_value": 700}) is not None
    # Time on the site: ten minutes after the visit began, on a later page.
    slow = await world.visitor()
    assert await world.view(slow, NOON, SHOP) is None
    later = await world.view(slow, NOON + 9 * MINUTE, SHOP, now=NOON + 10 * MINUTE)
    assert later is not None


async def test_one_decision_per_rule_and_visit(app: Any, client: httpx.AsyncClient) -> None:
    world = await make_world(app, client)
    rule = await world.rule(conditions={"url_contains": "/shop"})
    visitor = await world.visitor()
    assert await world.view(visitor, NOON, SHOP) is not None
    for minutes in (1, 2, 3):
        assert await world.view(visitor, NOON + minutes * MINUTE, SHOP) is None
    assert len(await world.decisions(visitor)) == 1
    # A visit hours later may be invited again.
    again = await world.view(visitor, NOON + timedelta(hours=3), SHOP)
    assert again is not None and str(again.rule_id) == rule["id"]
    assert len(await world.decisions(visitor)) == 2

    # Holds are not repeated on every page either (quiet hours at 22:30 UTC).
    night = await world.visitor()
    late = at("2026-11-24T22:30:00+00:00")
    for minutes in (0, 1, 2):
        assert await world.view(night, late + minutes * MINUTE, SHOP) is None
    assert [(d["decision"], d["reason"]) for d in await world.decisions(night)] == [
        ("hold", "quiet-hours")
    ]


async def test_quiet_hours_in_the_customers_timezone(app: Any, client: httpx.AsyncClient) -> None:
    world = await make_world(app, client)
    await world.rule(conditions={"min_pages_seen": 1})
    instant = at("2026-11-24T14:00:00+00:00")  # 23:00 in Tokyo, 09:00 in New York
    tokyo = await world.visitor(timezone="Asia/Tokyo")
    new_york = await world.visitor(timezone="America/New_York")
    assert await world.view(tokyo, instant, SHOP) is None
    assert await world.view(new_york, instant, SHOP) is not None
    [held] = await world.decisions(tokyo)
    assert (held["decision"], held["reason"]) == ("hold", "quiet-hours")
    detail = _json(held["detail"])
    assert (detail["timezone"], detail["local_time"], detail["timezone_source"]) == (
        "Asia/Tokyo",
        "23:00",
        "customer",
    )
    assert detail["quiet_hours"] == "21:00-08:00"
    # No timezone on the profile: the one the widget reported on the page view.
    reported = await world.visitor()
    assert await world.view(reported, instant, SHOP, {"timezone": "Asia/Tokyo"}) is None
    detail = _json((await world.decisions(reported))[0]["detail"])
    assert (detail["timezone"], detail["timezone_source"]) == ("Asia/Tokyo", "page_view")
    # Neither (or nonsense): UTC, where 14:00 is fine.
    unknown = await world.visitor()
    assert await world.view(unknown, instant, SHOP, {"timezone": "Mars/Olympus"}) is not None
    # The window wraps midnight: 07:59 local is still quiet, 08:00 is not.
    early = await world.visitor(timezone="Asia/Tokyo")
    assert await world.view(early, at("2026-11-24T22:59:00+00:00"), SHOP) is None
    assert await world.view(early, at("2026-11-24T23:00:00+00:00"), SHOP) is not None


async def test_revoked_consent_holds(app: Any, client: httpx.AsyncClient) -> None:
    world = await make_world(app, client)
    await world.rule(conditions={"min_pages_seen": 1})
    revoked = await world.visitor(consents={"webchat": "revoked"})
    assert await world.view(revoked, NOON, SHOP) is None
    [held] = await world.decisions(revoked)
    assert (held["decision"], held["reason"]) == ("hold", "no-consent")
    assert _json(held["detail"])["consent"] == "revoked"
    # Web chat is opt-out: no consent row is no objection; another channel's revocation
    # does not matter here.
    other = await world.visitor(consents={"sms": "revoked"})
    assert await world.view(other, NOON, SHOP) is not None


async def test_cap_counts_widget_invitations(app: Any, client: httpx.AsyncClient) -> None:
    world = await make_world(app, client)
    await world.rule(conditions={"min_pages_seen": 1})
    visitor = await world.visitor()
    for day in range(3):  # three visits on three days: three invitations
        assert await world.view(visitor, NOON + timedelta(days=day), SHOP) is not None
    assert await world.view(visitor, NOON + timedelta(days=3), SHOP) is None
    held = (await world.decisions(visitor))[-1]
    assert (held["decision"], held["reason"]) == ("hold", "frequency-cap")
    assert _json(held["detail"])["contacts_in_window"] == 3
    # A week after the first, there is room again.
    assert await world.view(visitor, NOON + timedelta(days=7, hours=1), SHOP) is not None


async def test_callback_rules_need_a_queue_taking_voice(
    app: Any, client: httpx.AsyncClient
) -> None:
    world = await make_world(app, client)  # the channel routes nowhere
    await world.rule(action="offer_callback", conditions={"min_pages_seen": 1}, priority=1)
    fallback = await world.rule(conditions={"min_pages_seen": 1}, priority=2)
    visitor = await world.visitor()
    invitation = await world.view(visitor, NOON, SHOP)
    assert invitation is not None and str(invitation.rule_id) == fallback["id"]


def _json(value: Any) -> dict[str, Any]:
    import json

    out: dict[str, Any] = value if isinstance(value, dict) else json.loads(value)
    return out
