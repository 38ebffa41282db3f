"""Where a router's time goes: a Router run in-process under cProfile while the load
runs at a steady rate, pg_stat_statements over the same window, and EXPLAIN ANALYZE of
the round's heaviest read (the available agents of a batch of tenants) as the routing
workers' role and, for the cost of row-level security, as the superuser."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import pstats
import re
import time
from pathlib import Path
from typing import Any

from loadtests import bench_routing_db as bdb
from loadtests.bench_routing_phases import Cpu, Load, log, window_counts

# Functions whose cumulative time we report whatever their rank.
WATCH = (
    "run_round",
    "plan_round",
    "load_queues",
    "load_available_agents",
    "load_waiting",
    "agent_snapshot",
    "contact_snapshot",
    "_apply_offers",
    "_set_next_due",
    "release_offers",
    "finish_wrap_ups",
    "expire_heartbeats",
    "emit",
    "trail",
    "_until_next_due",
)


def _router_main(url: str, seconds: float, out: str) -> None:
    """multiprocessing entry: a Router under cProfile for ``seconds`` after its leases."""
    import cProfile

    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()

    from app.routing.worker import Router, RouterConfig

    async def run() -> None:
        router = Router(RouterConfig(url=url))
        task = asyncio.create_task(router.run())
        while not router.shards:  # noqa: ASYNC110 - the Router has no event for this
            await asyncio.sleep(0.05)
        await asyncio.sleep(seconds)
        router.stop()
        await task

    prof = cProfile.Profile()
    prof.enable()
    asyncio.run(run())
    prof.disable()
    prof.dump_stats(out)


def _where(func: tuple[str, int, str]) -> str:
    path, line, name = func
    short = re.sub(r".*/(site-packages|work/main)/", "", path)
    return f"{short}:{line}({name})"


def _cprofile_summary(path: str, top: int = 25) -> dict[str, Any]:
    st = pstats.Stats(path)
    stats: dict[Any, Any] = st.stats  # type: ignore[attr-defined]
    rows = [
        {
            "function": _where(f),
            "calls": v[1],
            "tottime_s": round(v[2], 3),
            "cumtime_s": round(v[3], 3),
        }
        for f, v in stats.items()
    ]
    by_tot = sorted(rows, key=lambda r: -r["tottime_s"])[:top]
    watched = sorted(
        (
            r
            for r in rows
            if re.search(r"app/routing/.*\((" + "|".join(WATCH) + r")\)$", r["function"])
        ),
        key=lambda r: -r["cumtime_s"],
    )
    total = sum(v[2] for v in stats.values())
    return {
        "total_tottime_s": round(total, 3),
        "top_by_tottime": by_tot,
        "routing_functions_cumulative": watched,
    }


async def _statements(url: str, top: int = 20) -> list[dict[str, Any]]:
    conn = await bdb.connect(url)
    try:
        rows = await conn.fetch(
            """
            SELECT r.rolname AS role, s.calls, round(s.total_exec_time::numeric, 1) AS total_ms,
                   round(s.mean_exec_time::numeric, 3) AS mean_ms, s.rows,
                   left(regexp_replace(s.query, '\\s+', ' ', 'g'), 220) AS query
              FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid
             WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
             ORDER BY s.total_exec_time DESC LIMIT $1
            """,
            top,
        )
        return [
            dict(r) | {"total_ms": float(r["total_ms"]), "mean_ms": float(r["mean_ms"])}
            for r in rows
        ]
    finally:
        await conn.close()


async def _reset_statements(url: str) -> bool:
    conn = await bdb.connect(url)
    try:
        await conn.execute("SELECT pg_stat_statements_reset()")
        return True
    except Exception:
        return False
    finally:
        await conn.close()


async def explain_agents(db: bdb.BenchDb, tenants: list[bdb.Tenant], batch: int) -> dict[str, Any]:
    """The round's available-agents read for ``batch`` tenants, as the router (row-level
    security on) and as the superuser (off)."""
    from app.routing import snapshots

    sql = snapshots.AGENTS_SQL + (
        " WHERE p.tenant_id = ANY($1::uuid[]) AND p.status = 'available'"
        " AND p.used_points < p.capacity_points AND a.status = 'active'"
        " AND p.shard = ANY($2::smallint[])"
    )
    ids = [t.id for t in tenants[:batch]]
    shards = list(range(64))
    out: dict[str, Any] = {"tenants": len(ids)}
    for who, url in (("router", db.router), ("superuser", db.admin)):
        conn = await bdb.connect(url)
        try:
            async with conn.transaction():
                await conn.execute(
                    "SELECT set_config('app.router_shards', $1, true)", ",".join(map(str, shards))
                )
                best = None
                plan: list[str] = []
                for _ in range(3):
                    plan = [
                        r[0]
                        for r in await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + sql, ids, shards)
                    ]
                    ms = float(re.search(r"Execution Time: ([0-9.]+)", plan[-1]).group(1))  # type: ignore[union-attr]
                    best = ms if best is None else min(best, ms)
                out[f"{who}_ms"] = best
                if who == "router":
                    out["router_plan"] = [
                        re.sub(r"'\{[^}]{60,}\}'", "'{...}'", line) for line in plan
                    ]
        finally:
            await conn.close()
    return out


def profile(
    args: argparse.Namespace, srv: bdb.Server, db: bdb.BenchDb, seed: bdb.Seed, logs: Path
) -> dict[str, Any]:
    log(
        f"profile: one router in-process under cProfile, {args.profile_rate:.0f}/s for "
        f"{args.profile_seconds:.0f} s"
    )
    out_file = str(logs / "router.pstats")
    warm = args.warm
    ctx = mp.get_context("spawn")
    proc = ctx.Process(
        target=_router_main, args=(db.router, warm + args.profile_seconds + 1.0, out_file)
    )
    proc.start()
    load = Load(
        db,
        seed.tenants,
        args.generators,
        args.acceptors,
        args.handle_seconds,
        args.connections,
        args.enqueue,
        args.complete,
    )
    result: dict[str, Any] = {"rate": args.profile_rate, "seconds": args.profile_seconds}
    try:
        load.start()
        load.set_rate(args.profile_rate)
        time.sleep(warm)
        have_pss = asyncio.run(_reset_statements(db.admin))
        pm = srv.postmaster_pid()
        cpu0 = Cpu.now(None, load, pm)
        r0 = bdb.cpu_seconds(proc.pid or 0)
        t0 = time.time()
        time.sleep(args.profile_seconds)
        t1 = time.time()
        cpu1 = Cpu.now(None, load, pm)
        r1 = bdb.cpu_seconds(proc.pid or 0)
        counts = asyncio.run(window_counts(db.admin, t0, t1))
        counts.pop("latencies")
        result["window"] = counts
        accepted = counts["accepted"] or 1
        result["cpu"] = cpu1.since(cpu0, accepted)
        result["cpu"]["router_ms_per_assignment_profiled"] = round((r1 - r0) * 1000 / accepted, 3)
        if have_pss:
            result["pg_stat_statements"] = asyncio.run(_statements(db.admin))
        else:
            result["pg_stat_statements"] = "not available on this server"
    finally:
        load.stop()
        proc.join(timeout=60)
    if Path(out_file).exists():
        result["cprofile"] = _cprofile_summary(out_file)
    result["explain_available_agents"] = asyncio.run(explain_agents(db, seed.tenants, batch=200))
    return result
