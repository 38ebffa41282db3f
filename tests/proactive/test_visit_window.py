"""The visit a page view belongs to (pages seen, when it started), as the proactive
engine computes it in PostgreSQL, against a pure-Python reference: the visitor's page
views up to the evaluated one, walked back until a gap longer than VISIT_GAP."""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import httpx

from app.db.tenant import bind_tenant
from app.proactive.service import (
    MAX_VISIT_HOPS,
    MAX_VISIT_PAGES,
    VISIT_GAP,
    Visit,
    current_visit,
)
from app.routing.connection import raw
from app.routing.snapshots import decode_json
from tests.proactive.conftest import Visitor, World, at, make_world

NOON = at("2026-11-24T12:00:00+00:00")  # outside quiet hours in UTC
MICRO = timedelta(microseconds=1)
SHOP = "https://www.acme.example/shop"


def reference_visit(times: Sequence[datetime], upto: datetime) -> Visit:
    """The definition: walk the views at or before ``upto``, latest first, while each
    step back is at most VISIT_GAP. (The engine used to do this in Python over the
    latest 1,000 views only; the count still stops at MAX_VISIT_PAGES.)"""
    start, pages = upto, 0
    for t in sorted((t for t in times if t <= upto), reverse=True):
        if start - t > VISIT_GAP:
            break
        start, pages = t, pages + 1
    return Visit(started_at=start, pages_seen=min(max(pages, 1), MAX_VISIT_PAGES))


async def add_views(
    world: World,
    visitor: Visitor,
    times: Sequence[datetime],
    *,
    identity_id: uuid.UUID | None = None,
) -> list[uuid.UUID]:
    """Page views at ``times``, stored as the widget API stores them (app role, RLS)."""
    ids = [uuid.uuid4() for _ in times]
    async with world.app.state.session_factory() as session, session.begin():
        await bind_tenant(session, world.scope)
        conn = await raw(session)
        await conn.execute(
            "INSERT INTO page_views (tenant_id, id, customer_id, identity_id, channel_id, url, "
            "at, attributes) SELECT $1, v.id, $2, $3, $4, $5, v.at, '{}'::jsonb "
            "FROM unnest($6::uuid[], $7::timestamptz[]) AS v (id, at)",
            world.scope.tenant_id,
            visitor.customer_id,
            identity_id or visitor.identity.identity_id,
            visitor.channel_id,
            SHOP,
            ids,
            list(times),
        )
    return ids


async def engine_visits(world: World, visitor: Visitor, uptos: Sequence[datetime]) -> list[Visit]:
    async with world.app.state.session_factory() as session, session.begin():
        await bind_tenant(session, world.scope)
        conn = await raw(session)
        return [
            await current_visit(
                conn,
                world.scope,
                customer_id=visitor.customer_id,
                identity_id=visitor.identity.identity_id,
                upto=upto,
            )
            for upto in uptos
        ]


async def assert_parity(
    world: World, visitor: Visitor, times: Sequence[datetime], uptos: Sequence[datetime]
) -> list[Visit]:
    got = await engine_visits(world, visitor, uptos)
    for upto, visit in zip(uptos, got, strict=True):
        assert visit == reference_visit(times, upto), upto
    return got


async def test_first_page_view_ever(app: Any, client: httpx.AsyncClient) -> None:
    world = await make_world(app, client)
    visitor = await world.visitor()
    await add_views(world, visitor, [NOON])
    [visit] = await assert_parity(world, visitor, [NOON], [NOON])
    assert visit == Visit(started_at=NOON, pages_seen=1)


async def test_a_gap_of_exactly_the_timeout_keeps_the_visit(
    app: Any, client: httpx.AsyncClient
) -> None:
    world = await make_world(app, client)
    visitor = await world.visitor()
    # 30 min, 30 min, then 30 min and a microsecond: a new visit begins at the fourth.
    times = [NOON, NOON + VISIT_GAP, NOON + 2 * VISIT_GAP, NOON + 3 * VISIT_GAP + MICRO]
    await add_views(world, visitor, times)
    visits = await assert_parity(world, visitor, times, times)
    assert [v.pages_seen for v in visits] == [1, 2, 3, 1]
    assert [v.started_at for v in visits] == [NOON, NOON, NOON, times[3]]


async def test_views_at_the_same_instant_all_count(app: Any, client: httpx.AsyncClient) -> None:
    world = await make_world(app, client)
    visitor = await world.visitor()
    later = NOON + timedelta(minutes=10)
    # Two views at the visit's first instant, three at a later one, one after that.
    times = [NOON, NOON, later, later, later, later + timedelta(minutes=5)]
    await add_views(world, visitor, times)
    visits = await assert_parity(world, visitor, times, [NOON, later, times[-1]])
    # Evaluated at ``later``: its three views count, the later one does not.
    assert [v.pages_seen for v in visits] == [2, 5, 6]
    assert {v.started_at for v in visits} == {NOON}


async def test_an_earlier_page_view_sees_its_own_visit(app: Any, client: httpx.AsyncClient) -> None:
    world = await make_world(app, client)
    visitor = await world.visitor()
    times = [NOON, NOON + timedelta(minutes=5), NOON + timedelta(hours=2)]
    await add_views(world, visitor, times)
    visits = await assert_parity(world, visitor, times, times)
    assert visits[1] == Visit(started_at=NOON, pages_seen=2)
    assert visits[2] == Visit(started_at=times[2], pages_seen=1)


async def test_random_histories_match_the_reference(app: Any, client: httpx.AsyncClient) -> None:
    world = await make_world(app, client)
    rng = random.Random(20261124)
    # Gaps around the timeout's edge, same-instant views, ordinary and long pauses.
    gaps = [
        timedelta(0),
        MICRO,
        timedelta(seconds=7),
        timedelta(minutes=4),
        VISIT_GAP - MICRO,
        VISIT_GAP,
        VISIT_GAP + MICRO,
        timedelta(hours=3),
        timedelta(days=2),
    ]
    for _ in range(3):
        visitor = await world.visitor()
        times, t = [], NOON
        for _ in range(rng.randint(60, 160)):
            t += rng.choice(gaps)
            times.append(t)
        await add_views(world, visitor, times)
        # Every view's own instant, and instants between them (a later evaluation).
        between = [s + timedelta(seconds=rng.randint(1, 3600)) for s in rng.sample(times, 20)]
        visits = await assert_parity(world, visitor, times, times + between)
        assert max(v.pages_seen for v in visits) > 1  # the histories have real visits
        assert len({v.started_at for v in visits}) > 1  # ... and more than one


async def test_other_visitors_views_do_not_count(app: Any, client: httpx.AsyncClient) -> None:
    world = await make_world(app, client)
    visitor, stranger = await world.visitor(), await world.visitor()
    # The same customer on a second device: its own identity, its own visits.
    device = uuid.uuid4()
    async with app.state.session_factory() as session, session.begin():
        await bind_tenant(session, world.scope)
        await (await raw(session)).execute(
            "INSERT INTO customer_identities (tenant_id, id, customer_id, kind, value, "
            "verified, created_at) VALUES ($1, $2, $3, 'webchat', $4, false, now())",
            world.scope.tenant_id,
            device,
            visitor.customer_id,
            f"visitor-{device.hex}",
        )
    mine = [NOON, NOON + timedelta(hours=1), NOON + timedelta(hours=2)]
    # The other device and the other customer fill the gaps that split my visits.
    theirs = [NOON + k * timedelta(minutes=20) for k in range(7)]
    await add_views(world, visitor, mine)
    await add_views(world, visitor, theirs, identity_id=device)
    await add_views(world, stranger, theirs)
    visits = await assert_parity(world, visitor, mine, mine)
    assert [v.pages_seen for v in visits] == [1, 1, 1]


async def test_a_visit_longer_than_the_page_cap_keeps_its_start(
    app: Any, client: httpx.AsyncClient
) -> None:
    """1,500 pages a second apart after an earlier visit: pages_seen stops at 1,000 as
    before, and the visit starts at its first page (the old walk read only the latest
    1,000 views, so its visit started at the 1,000th page from the end)."""
    world = await make_world(app, client)
    visitor = await world.visitor()
    earlier = [NOON - timedelta(hours=5) + k * timedelta(minutes=1) for k in range(10)]
    long_visit = [NOON + k * timedelta(seconds=1) for k in range(1500)]
    times = earlier + long_visit
    await add_views(world, visitor, times)
    uptos = [long_visit[998], long_visit[999], long_visit[1000], long_visit[-1]]
    visits = await assert_parity(world, visitor, times, uptos)
    assert [v.pages_seen for v in visits] == [999, 1000, 1000, 1000]
    assert {v.started_at for v in visits} == {NOON}


async def test_the_walk_stops_after_its_hop_limit(app: Any, client: httpx.AsyncClient) -> None:
    """A view every 29 minutes for three weeks (a bot): one hop per view, so the visit
    counts from the view MAX_VISIT_HOPS back, and pages_seen from there (capped)."""
    world = await make_world(app, client)
    visitor = await world.visitor()
    times = [NOON + k * timedelta(minutes=29) for k in range(MAX_VISIT_HOPS + 100)]
    await add_views(world, visitor, times)
    [visit] = await engine_visits(world, visitor, [times[-1]])
    assert visit.started_at == times[-1 - MAX_VISIT_HOPS]
    assert visit.pages_seen == MAX_VISIT_PAGES
    # Within the limit, the walk reaches the visit's true start.
    [short] = await engine_visits(world, visitor, [times[MAX_VISIT_HOPS - 1]])
    assert short == reference_visit(times, times[MAX_VISIT_HOPS - 1])
    assert short.started_at == NOON


async def test_the_engine_decides_on_the_visit(app: Any, client: httpx.AsyncClient) -> None:
    """Through evaluate_visit: the recorded decision carries the visit's start, pages
    and time on the site, as the reference computes them."""
    world = await make_world(app, client)
    await world.rule(conditions={"min_pages_seen": 4, "min_dwell_seconds": 600})
    visitor = await world.visitor()
    # An earlier visit, then this one: three pages, each under the timeout apart.
    times = [
        NOON - timedelta(hours=3),
        NOON - timedelta(hours=3) + timedelta(minutes=2),
        NOON,
        NOON + VISIT_GAP,
        NOON + VISIT_GAP,
    ]
    await add_views(world, visitor, times)
    now = NOON + VISIT_GAP + timedelta(minutes=5)
    expected = reference_visit([*times, now], now)
    assert expected == Visit(started_at=NOON, pages_seen=4)
    invitation = await world.view(visitor, now, SHOP, now=now + timedelta(seconds=30))
    assert invitation is not None
    [decision] = await world.decisions(visitor)
    detail = decode_json(decision["detail"])
    assert detail["visit_started_at"] == expected.started_at.isoformat()
    assert detail["pages_seen"] == expected.pages_seen
    assert detail["visit_seconds"] == (now + timedelta(seconds=30) - NOON).total_seconds()
