"""Proactive engine: what finding the current visit costs, the old way and the new.

    .venv/bin/python -m loadtests.bench_proactive_visit              # ~1 minute
    .venv/bin/python -m loadtests.bench_proactive_visit --runs 15 --background 20000
    .venv/bin/python -m loadtests.bench_proactive_visit --explain    # plans on stderr

The old way (kept here only, as ``old_visit``) read the visitor's latest 1,000 page
view timestamps and walked them in Python to the first gap over 30 minutes; its query
named the identity but not the customer, so no index led to the visitor's rows. The
new way is :func:`app.proactive.service.current_visit`: one query that hops back
through the visit a gap window at a time on ix_page_views_tenant_id_customer_id_at.

A fresh database (SWITCHBOARD_DATABASE_URL, a superuser, when set; else a throwaway
embedded PostgreSQL), migrated, then seeded as the superuser (COPY): one tenant with a
web chat channel and one rule that matches every page view, ``--background`` page
views of other customers of the same tenant (visitors with 50 views each), and the
measured visitors:

- ``views_10``: 10 page views, two visits of 5;
- ``views_1000``: 1,000 page views, 100 visits of 10;
- ``views_5000``: 5,000 page views, 500 visits of 10;
- ``views_5000_one_visit``: 5,000 page views 2 s apart, one visit (longer than the old
  walk's 1,000-page cap: the old way reports a later start, see ``visit``).

Each is evaluated at its latest page view, as the application role (row-level
security on), ``--runs`` times per way, old and new interleaved. Two measures:
``visit`` (the lookup alone, in one transaction) and ``evaluate`` (all of
:func:`app.proactive.service.evaluate_visit`, rule matched and decision recorded,
rolled back after each run; the old way swapped in for its runs). Medians in
milliseconds, one JSON object on stdout. Not a timed test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.tenant import TenantScope, bind_tenant, mint_scope
from app.proactive import service
from app.proactive.service import MAX_VISIT_PAGES, VISIT_GAP, Visit
from app.routing.connection import raw
from loadtests import bench_routing_db as bdb

NOON = datetime(2026, 11, 24, 12, tzinfo=UTC)
URL = "https://shop.example/"


async def old_visit(
    conn: asyncpg.Connection, scope: TenantScope, identity_id: uuid.UUID, upto: datetime
) -> Visit:
    """The engine's visit lookup before the single query (app/proactive/service.py)."""
    times = [
        r["at"]
        for r in await conn.fetch(
            "SELECT at FROM page_views WHERE tenant_id = $1 AND identity_id = $2 AND at <= $3 "
            "ORDER BY at DESC LIMIT $4",
            scope.tenant_id,
            identity_id,
            upto,
            MAX_VISIT_PAGES,
        )
    ]
    start, pages = upto, 0
    for at in times:
        if start - at > VISIT_GAP:
            break
        start, pages = at, pages + 1
    return Visit(started_at=start, pages_seen=max(pages, 1))


async def old_visit_as_new(
    conn: asyncpg.Connection,
    scope: TenantScope,
    *,
    customer_id: uuid.UUID,
    identity_id: uuid.UUID,
    upto: datetime,
) -> Visit:
    return await old_visit(conn, scope, identity_id, upto)


# The other candidate for the query: LAG() over the visitor's whole history.
LAG_QUERY = """
WITH views AS (
    SELECT at, at - lag(at) OVER (ORDER BY at) AS gap FROM page_views
     WHERE tenant_id = $1 AND customer_id = $2 AND identity_id = $3 AND at <= $4
), start AS (
    SELECT max(at) AS at FROM views WHERE gap IS NULL OR gap > $5::interval
)
SELECT start.at AS started_at, (SELECT count(*) FROM views WHERE at >= start.at) AS pages_seen
  FROM start
"""


@dataclass(frozen=True)
class Measured:
    name: str
    customer_id: uuid.UUID
    identity_id: uuid.UUID
    page_view_id: uuid.UUID  # the latest
    at: datetime
    views: int


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=41, help="per way and visitor (default 41)")
    ap.add_argument(
        "--background",
        type=int,
        default=100_000,
        help="page views of other customers of the tenant (default 100,000)",
    )
    ap.add_argument("--explain", action="store_true", help="EXPLAIN ANALYZE plans on stderr")
    return ap.parse_args()


def log(msg: str) -> None:
    print(f"[bench_proactive_visit] {msg}", file=sys.stderr, flush=True)


def visits_of(rng: random.Random, views: int, per_visit: int, end: datetime) -> list[datetime]:
    """``views`` page views in visits of ``per_visit``, a minute or so apart, the visits
    hours apart, the last one at ``end``."""
    times: list[datetime] = []
    t = end
    for k in range(views):
        times.append(t)
        step = (
            timedelta(hours=rng.uniform(4, 30))
            if (k + 1) % per_visit == 0
            else timedelta(seconds=rng.uniform(20, 180))
        )
        t -= step
    return sorted(times)


async def seed(url: str, background: int) -> tuple[TenantScope, uuid.UUID, list[Measured]]:
    rng = random.Random(7)
    conn = await bdb.connect(url)
    now = datetime.now(UTC)
    tenant_id, channel_id = uuid.uuid4(), uuid.uuid4()
    try:
        await conn.execute(
            "INSERT INTO tenants (id, name, slug, status, plan, created_at, updated_at) "
            "VALUES ($1, 'Bench proactive', $2, 'active', 'growth', $3, $3)",
            tenant_id,
            f"bench-proactive-{tenant_id.hex[:8]}",
            now,
        )
        await conn.execute(
            "INSERT INTO channels (version, created_at, updated_at, tenant_id, id, type, name, "
            "enabled, config) VALUES (1, $1, $1, $2, $3, 'webchat', 'Website chat', true, "
            "'{}'::jsonb)",
            now,
            tenant_id,
            channel_id,
        )
        await conn.execute(
            "INSERT INTO proactive_rules (version, created_at, updated_at, tenant_id, id, name, "
            "enabled, channel_id, conditions, action, message, priority) VALUES (1, $1, $1, "
            "$2, $3, 'Any page', true, NULL, '{\"min_pages_seen\": 1}'::jsonb, 'invite_chat', "
            "'Can we help?', 10)",
            now,
            tenant_id,
            uuid.uuid4(),
        )
        customers: list[tuple[Any, ...]] = []
        identities: list[tuple[Any, ...]] = []
        views: list[tuple[Any, ...]] = []

        def visitor(times: list[datetime]) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
            cid, iid = uuid.uuid4(), uuid.uuid4()
            customers.append((1, now, now, tenant_id, cid, "{}"))
            identities.append((tenant_id, iid, cid, "webchat", f"visitor-{iid.hex}", False, now))
            last = uuid.uuid4()
            for k, t in enumerate(times):
                vid = last if k == len(times) - 1 else uuid.uuid4()
                views.append(
                    (tenant_id, vid, cid, iid, channel_id, "https://shop.example/", t, "{}")
                )
            return cid, iid, last

        for _ in range(background // 50):
            end = NOON - timedelta(minutes=rng.uniform(0, 60 * 24 * 30))
            visitor(visits_of(rng, 50, 10, end))
        measured = []
        for name, times in (
            ("views_10", visits_of(rng, 10, 5, NOON)),
            ("views_1000", visits_of(rng, 1000, 10, NOON)),
            ("views_5000", visits_of(rng, 5000, 10, NOON)),
            ("views_5000_one_visit", [NOON - k * timedelta(seconds=2) for k in range(5000)][::-1]),
        ):
            cid, iid, last = visitor(times)
            measured.append(Measured(name, cid, iid, last, times[-1], len(times)))
        await conn.copy_records_to_table(
            "customers",
            records=customers,
            columns=("version", "created_at", "updated_at", "tenant_id", "id", "attributes"),
        )
        await conn.copy_records_to_table(
            "customer_identities",
            records=identities,
            columns=("tenant_id", "id", "customer_id", "kind", "value", "verified", "created_at"),
        )
        await conn.copy_records_to_table(
            "page_views",
            records=views,
            columns=(
                "tenant_id",
                "id",
                "customer_id",
                "identity_id",
                "channel_id",
                "url",
                "at",
                "attributes",
            ),
        )
        await conn.execute("VACUUM ANALYZE page_views")
        await conn.execute("VACUUM ANALYZE customers")
    finally:
        await conn.close()
    return mint_scope(tenant_id), channel_id, measured


VisitFn = Callable[..., Awaitable[Visit]]
WAYS: dict[str, VisitFn] = {"old": old_visit_as_new, "new": service.current_visit}


@contextlib.asynccontextmanager
async def bound(factory: Any, scope: TenantScope) -> AsyncIterator[AsyncSession]:
    async with factory() as session:
        await session.begin()
        try:
            await bind_tenant(session, scope)
            yield session
        finally:
            await session.rollback()


async def time_visit(factory: Any, scope: TenantScope, m: Measured, way: str) -> float:
    async with bound(factory, scope) as session:
        conn = await raw(session)
        started = time.perf_counter()
        await WAYS[way](
            conn, scope, customer_id=m.customer_id, identity_id=m.identity_id, upto=m.at
        )
        return (time.perf_counter() - started) * 1000


async def time_evaluate(
    factory: Any, scope: TenantScope, channel_id: uuid.UUID, m: Measured, way: str
) -> float:
    original = service.current_visit
    service.current_visit = WAYS[way]  # type: ignore[assignment]
    try:
        async with bound(factory, scope) as session:
            started = time.perf_counter()
            invitation = await service.evaluate_visit(
                session,
                scope,
                customer_id=m.customer_id,
                identity_id=m.identity_id,
                channel_id=channel_id,
                page_view_id=m.page_view_id,
                now=m.at + timedelta(seconds=5),
            )
            elapsed = (time.perf_counter() - started) * 1000
            assert invitation is not None, "the bench rule matches every page view"
            return elapsed
    finally:
        service.current_visit = original


async def explain(factory: Any, scope: TenantScope, m: Measured) -> dict[str, float]:
    """EXPLAIN ANALYZE of the old query, the new one and the LAG() candidate (plans on
    stderr); their execution times in ms."""
    queries = {
        "old": (
            "SELECT at FROM page_views WHERE tenant_id = $1 AND identity_id = $2 AND at <= $3 "
            "ORDER BY at DESC LIMIT 1000",
            (scope.tenant_id, m.identity_id, m.at),
        ),
        "new": (
            service._CURRENT_VISIT,
            (
                scope.tenant_id,
                m.customer_id,
                m.identity_id,
                m.at,
                VISIT_GAP,
                service.MAX_VISIT_HOPS,
                MAX_VISIT_PAGES,
            ),
        ),
        "lag": (LAG_QUERY, (scope.tenant_id, m.customer_id, m.identity_id, m.at, VISIT_GAP)),
    }
    out: dict[str, float] = {}
    async with bound(factory, scope) as session:
        conn = await raw(session)
        for way, (sql, args) in queries.items():
            plan = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + sql, *args)
            lines = [r[0] for r in plan]
            log(f"EXPLAIN {m.name} {way}:\n  " + "\n  ".join(lines))
            total = next(x for x in lines if x.startswith("Execution Time"))
            out[way] = float(total.split(":")[1].split()[0])
    return out


async def run(urls: bdb.BenchDb, args: argparse.Namespace) -> dict[str, Any]:
    from app.db.engine import create_engine, make_session_factory

    started = time.perf_counter()
    scope, channel_id, measured = await seed(urls.admin, args.background)
    log(f"seeded in {time.perf_counter() - started:.1f} s")
    engine = create_engine(urls.app, pool_size=2, max_overflow=0)
    factory = make_session_factory(engine)
    results: dict[str, Any] = {}
    try:
        for m in measured:
            entry: dict[str, Any] = {"page_views": m.views}
            async with bound(factory, scope) as session:
                conn = await raw(session)
                got = {
                    way: await fn(
                        conn, scope, customer_id=m.customer_id, identity_id=m.identity_id, upto=m.at
                    )
                    for way, fn in WAYS.items()
                }
            entry["visit"] = {
                way: {"started_at": v.started_at.isoformat(), "pages_seen": v.pages_seen}
                for way, v in got.items()
            }
            entry["same_visit"] = got["old"] == got["new"]
            samples: dict[str, dict[str, list[float]]] = {
                measure: {way: [] for way in WAYS} for measure in ("visit", "evaluate")
            }
            for _ in range(3):  # warm the pool, the caches and the prepared statements
                for way in WAYS:
                    await time_visit(factory, scope, m, way)
                    await time_evaluate(factory, scope, channel_id, m, way)
            for k in range(args.runs):
                order = list(WAYS) if k % 2 == 0 else list(reversed(WAYS))
                for way in order:
                    samples["visit"][way].append(await time_visit(factory, scope, m, way))
                    samples["evaluate"][way].append(
                        await time_evaluate(factory, scope, channel_id, m, way)
                    )
            for measure, by_way in samples.items():
                entry[f"{measure}_ms_median"] = {
                    way: round(statistics.median(xs), 3) for way, xs in by_way.items()
                }
                entry[f"{measure}_ms_p90"] = {
                    way: round(statistics.quantiles(xs, n=10)[-1], 3) for way, xs in by_way.items()
                }
            if args.explain:
                entry["explain_execution_ms"] = await explain(factory, scope, m)
            log(f"{m.name}: {json.dumps({k: v for k, v in entry.items() if 'ms' in k})}")
            results[m.name] = entry
    finally:
        await engine.dispose()
    return results


async def _version(url: str) -> str:
    conn = await bdb.connect(url)
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


def main() -> None:
    args = parse()
    with bdb.server(durable=False, stat_statements=False) as srv, bdb.database(srv) as urls:
        results = asyncio.run(run(urls, args))
        version = asyncio.run(_version(urls.admin))
    print(
        json.dumps(
            {
                "benchmark": "proactive_visit",
                "runs": args.runs,
                "background_page_views": args.background,
                "machine": {
                    "python": platform.python_version(),
                    "cpus": os.cpu_count(),
                    "server_version": version,
                    "loadavg": Path("/proc/loadavg").read_text().strip(),
                },
                "visitors": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
