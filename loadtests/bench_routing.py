"""Routing benchmark: how many contacts per second the routing tier offers and gets
accepted, how long a contact waits for its offer, what a router costs in memory, all
next to pgbench on the same PostgreSQL in the same run.

    .venv/bin/python -m loadtests.bench_routing --json           # full: ~7 minutes
    .venv/bin/python -m loadtests.bench_routing --quick --json   # under a minute
    .venv/bin/python -m loadtests.bench_routing --profile        # + cProfile, pg_stat_statements

Scenario (full): 1,000 tenants, 10 logged-in agents each (10,000), 20 skills per tenant,
one chat queue per tenant (1,000 queues) requiring one skill; every agent available with
100 points, a chat costs 34. Contacts arrive at a steady rate spread evenly over the
tenants; agents accept every offer at once and finish after ``--handle-seconds``.
``switchboard router`` processes (1, then 2) route; see docs/benchmarks.md for the
method, the definitions and the figures.

It needs nothing running: SWITCHBOARD_DATABASE_URL (a superuser) when set, else a
throwaway embedded PostgreSQL. A fresh database is created, migrated, seeded and dropped.
Progress goes to stderr, one JSON object to stdout. Not a timed test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from loadtests import bench_routing_db as bdb
from loadtests.bench_routing_phases import (
    Cpu,
    Load,
    Routers,
    acceptor_latencies,
    drain,
    errors_of,
    line_length,
    log,
    percentiles,
    window_counts,
)

TARGET_ASSIGNMENTS_PER_S = 5000
TARGET_P99_MS = 25.0


def uptime() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "?"


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small scenario, short windows (<60 s)")
    ap.add_argument("--json", action="store_true", help="JSON only on stdout (the default)")
    ap.add_argument(
        "--routers", default=None, help="router counts to measure (default 1,2; quick 1)"
    )
    ap.add_argument("--tenants", type=int, default=None)
    ap.add_argument("--agents-per-tenant", type=int, default=10)
    ap.add_argument("--generators", type=int, default=1, help="load generator processes")
    ap.add_argument("--acceptors", type=int, default=2, help="acceptor processes")
    ap.add_argument("--connections", type=int, default=8, help="pool size per load process")
    ap.add_argument("--handle-seconds", type=float, default=1.0)
    ap.add_argument(
        "--enqueue",
        choices=("lean", "service"),
        default="lean",
        help="lean: enqueue's rows and NOTIFY in one round trip; "
        "service: contacts.enqueue's statements one by one",
    )
    ap.add_argument(
        "--complete",
        choices=("batch", "service"),
        default="batch",
        help="batch: finished work ends every 50 ms, one transaction per tenant; "
        "service: reservations.complete's statements per contact",
    )
    ap.add_argument("--latency-rate", type=float, default=1000.0)
    ap.add_argument("--start-rate", type=float, default=None, help="first step (default 250)")
    ap.add_argument("--max-rate", type=float, default=10000.0)
    ap.add_argument("--durable", action="store_true", help="embedded server with fsync on")
    ap.add_argument(
        "--profile",
        action="store_true",
        help="also profile a router in-process (cProfile) with pg_stat_statements",
    )
    ap.add_argument("--profile-seconds", type=float, default=None)
    ap.add_argument(
        "--profile-rate",
        type=float,
        default=None,
        help="default: the highest rate one router sustained",
    )
    ap.add_argument("--skip-pgbench", action="store_true")
    ap.add_argument("--skip-drain", action="store_true")
    a = ap.parse_args()
    q = a.quick
    a.routers = [int(x) for x in (a.routers or ("1" if q else "1,2")).split(",")]
    a.tenants = a.tenants or (100 if q else 1000)
    a.warm = 2.0 if q else 8.0
    a.latency_window = 5.0 if q else 30.0
    a.step_warm = 2.0 if q else 4.0
    a.step_window = 4.0 if q else 10.0
    a.max_steps = 2 if q else 9
    a.start_rate = a.start_rate or 250.0
    a.pgbench_seconds = 4 if q else 30
    a.pgbench_scale = 1 if q else 10
    a.profile_seconds = a.profile_seconds or (8.0 if q else 30.0)
    return a


# ------------------------------------------------------------------------------ phases


def measure(
    args: argparse.Namespace,
    db: bdb.BenchDb,
    load: Load,
    routers: Routers | None,
    postmaster: int | None,
    rate: float,
    warm: float,
    window: float,
    settle: float = 0.5,
) -> dict[str, Any]:
    """Run at ``rate`` for ``warm`` + ``window`` seconds; figures for the window."""
    load.set_rate(rate)
    time.sleep(warm)
    cpu0 = Cpu.now(routers, load, postmaster)
    t0 = time.time()
    time.sleep(window)
    t1 = time.time()
    cpu1 = Cpu.now(routers, load, postmaster)
    time.sleep(settle)  # offers of the window's last arrivals reach the acceptor
    counts = asyncio.run(window_counts(db.admin, t0, t1))
    stats = load.stats()
    lat_db = counts.pop("latencies")
    lat_agent = acceptor_latencies(stats, t0, t1)
    arrivals = counts["arrivals"] / window
    accepts = counts["accepted"] / window
    growth = counts["line_end"] - counts["line_start"]
    generator_kept_up = arrivals >= 0.95 * rate
    kept_up = accepts >= 0.95 * arrivals and growth <= 0.05 * max(counts["arrivals"], 1)
    return {
        "target_rate": rate,
        "arrivals_per_s": round(arrivals, 1),
        "offers_per_s": round(counts["offered"] / window, 1),
        "accepts_per_s": round(accepts, 1),
        "line_start": counts["line_start"],
        "line_end": counts["line_end"],
        "sustained": bool(generator_kept_up and kept_up),
        "generator_kept_up": generator_kept_up,
        "latency_ms": percentiles(lat_db),
        "never_offered": sum(1 for v in lat_db if math.isinf(v)),
        "latency_offer_received_ms": percentiles(lat_agent["offered"]),
        "latency_accepted_ms": percentiles(lat_agent["accepted"]),
        "cpu": cpu1.since(cpu0, counts["accepted"]),
        "errors": errors_of(stats),
        "load": uptime(),
    }


def clean_slate(db: bdb.BenchDb, load: Load) -> int:
    """Stop arrivals and start the next phase with no line and every agent free (the
    line is abandoned): a line left by an overloaded phase would take minutes to serve
    and would weigh on the next. Returns the line that was dropped."""
    load.set_rate(0)
    time.sleep(1.0)
    left = asyncio.run(line_length(db.admin))
    asyncio.run(bdb.cancel_all(db.admin))
    time.sleep(0.5)
    return left


def summary(step: dict[str, Any]) -> str:
    lat = step["latency_ms"]
    return (
        f"rate {step['target_rate']:.0f}/s: arrivals {step['arrivals_per_s']}/s, accepts "
        f"{step['accepts_per_s']}/s, line {step['line_start']}->{step['line_end']}, "
        f"p50/p99 {lat['p50']}/{lat['p99']} ms, sustained={step['sustained']}, "
        f"cores {step['cpu']['cores_used']}"
    )


def search(
    args: argparse.Namespace, db: bdb.BenchDb, load: Load, routers: Routers, pm: int | None
) -> list[dict[str, Any]]:
    """Raise the arrival rate (x1.5) until a step is not sustained (or halve until one
    holds); then bisect between the best sustained and the lowest failed rate until they
    are within 25 % (or the step budget is spent)."""
    steps: list[dict[str, Any]] = []
    rate = args.start_rate
    best: float | None = None  # highest sustained rate so far
    failed: float | None = None  # lowest failed rate so far
    while len(steps) < args.max_steps:
        step = measure(args, db, load, routers, pm, rate, args.step_warm, args.step_window)
        steps.append(step)
        log("  " + summary(step))
        if step["sustained"]:
            best = max(best or 0.0, rate)
        else:
            failed = min(failed or math.inf, rate)
            left = clean_slate(db, load)
            log(f"  reset (dropped a line of {left})")
        if failed is None:
            if rate >= args.max_rate:
                break
            rate = min(args.max_rate, round(rate * 1.5 / 50) * 50)
        elif best is None:
            if rate <= 100:
                break
            rate = max(100.0, round(rate / 2 / 50) * 50)
        else:
            mid = round((best + failed) / 2 / 50) * 50
            if failed / best <= 1.25 or mid in (best, failed):
                break
            rate = mid
    load.set_rate(0)
    return steps


def run_config(
    args: argparse.Namespace,
    srv: bdb.Server,
    db: bdb.BenchDb,
    seed: bdb.Seed,
    n: int,
    logs: Path,
) -> dict[str, Any]:
    log(f"{n} router(s): reset, start")
    asyncio.run(bdb.reset(db.admin))
    routers = Routers(db, n, logs)
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
    pm = srv.postmaster_pid()
    out: dict[str, Any] = {"routers": n}
    try:
        routers.start()
        load.start()
        if not args.skip_drain:
            load.pause_acceptors(True)
            cpu0 = Cpu.now(routers, load, pm)
            d = asyncio.run(drain(db, per_tenant=2 * args.agents_per_tenant))
            d["cpu"] = Cpu.now(routers, load, pm).since(cpu0, d["offered"])
            out["router_drain"] = d
            log(f"  drain: {d['offered']} offers in {d['seconds']} s = {d['offers_per_s']}/s")
            asyncio.run(bdb.cancel_all(db.admin))
            load.pause_acceptors(False)
        lat = measure(
            args,
            db,
            load,
            routers,
            pm,
            args.latency_rate,
            args.warm,
            args.latency_window,
            settle=2.0,
        )
        log("  latency phase: " + summary(lat))
        out["at_latency_rate"] = lat
        clean_slate(db, load)
        out["steps"] = search(args, db, load, routers, pm)
        held = [s for s in out["steps"] if s["sustained"]]
        out["assignments_per_s"] = max((s["accepts_per_s"] for s in held), default=0.0)
        out["highest_accepts_per_s_seen"] = max(s["accepts_per_s"] for s in out["steps"])
        out["router_peak_rss_mb"] = routers.peak_rss_mb()
        if held:
            top = max(held, key=lambda s: s["accepts_per_s"])
            per = top["cpu"]["cpu_ms_per_assignment"]
            cores = os.cpu_count() or 1
            # What the measured CPU per assignment allows when this run's processes have
            # every core to themselves (the machine is shared: see loadavg).
            out["cpu_ms_per_assignment"] = per
            out["assignments_per_s_if_all_cores"] = (
                round(cores * 1000.0 / per["total"], 1) if per["total"] else None
            )
    finally:
        log("  stopping the load and the routers")
        load.stop()
        routers.stop()
        log("  stopped")
    out["failed_rounds"] = routers.failed_rounds()
    if routers.stuck:
        out["router_stop"] = [*routers.stuck, f"stacks in {logs}"]
        log(f"  {routers.stuck}; stacks in {logs}")
    return out


def main() -> None:
    args = parse()
    started = time.monotonic()
    result: dict[str, Any] = {
        "benchmark": "routing",
        "mode": "quick" if args.quick else "full",
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg_start": uptime(),
        },
    }
    logs = Path(tempfile.mkdtemp(prefix="bench-routing-logs-"))
    with bdb.server(durable=args.durable, stat_statements=args.profile) as srv:
        result["machine"]["postgres"] = "embedded" if srv.embedded else "SWITCHBOARD_DATABASE_URL"
        result["machine"]["fsync"] = bool(args.durable) if srv.embedded else "server's own"
        if not args.skip_pgbench:
            log("pgbench -i / -N ...")
            result["pgbench"] = bdb.pgbench(
                srv, scale=args.pgbench_scale, clients=8, threads=2, seconds=args.pgbench_seconds
            )
            log(f"  pgbench: {result['pgbench']}")
        with bdb.database(srv) as db:
            log(f"database {db.name} migrated; seeding {args.tenants} tenants")
            seed = asyncio.run(
                bdb.seed(db.admin, tenants=args.tenants, agents_per_tenant=args.agents_per_tenant)
            )
            log(f"  seeded {seed.agents} agents in {seed.seconds:.1f} s")
            result["machine"]["server_version"] = asyncio.run(_version(db.admin))
            result["scenario"] = {
                "tenants": args.tenants,
                "agents": seed.agents,
                "skills": args.tenants * bdb.SKILLS_PER_TENANT,
                "queues": args.tenants,
                "channel": "chat",
                "chat_cost_points": bdb.CHAT_COST,
                "capacity_points": bdb.CAPACITY_POINTS,
                "handle_seconds": args.handle_seconds,
                "enqueue": args.enqueue,
                "complete": args.complete,
                "wrap_up_seconds": 0,
                "generators": args.generators,
                "acceptors": args.acceptors,
                "connections_per_process": args.connections,
                "latency_rate": args.latency_rate,
                "windows_s": {
                    "warm": args.warm,
                    "latency": args.latency_window,
                    "step_warm": args.step_warm,
                    "step": args.step_window,
                },
            }
            configs = {}
            for n in args.routers:
                configs[str(n)] = run_config(args, srv, db, seed, n, logs)
            result["by_routers"] = configs
            if args.profile:
                from loadtests.bench_routing_profile import profile

                asyncio.run(bdb.reset(db.admin))
                # Default: the highest rate one router sustained (a router that cannot
                # keep up shows the backlog's cost, not the steady state's).
                if args.profile_rate is None:
                    first = next(iter(configs.values()))
                    args.profile_rate = first["assignments_per_s"] or 100.0
                result["profile"] = profile(args, srv, db, seed, logs)
        log("database dropped; stopping the server")
    best = max(result["by_routers"].values(), key=lambda c: c["assignments_per_s"])
    lat = best["at_latency_rate"]["latency_ms"]
    tps = (result.get("pgbench") or {}).get("tps")
    result.update(
        routers=best["routers"],
        assignments_per_s=best["assignments_per_s"],
        latency_ms=lat,
        router_peak_rss_mb=max((x for x in best["router_peak_rss_mb"] if x), default=None),
        pgbench_tps=tps,
        ratio_to_pgbench=round(best["assignments_per_s"] / tps, 3) if tps else None,
        targets={
            "assignments_per_s": TARGET_ASSIGNMENTS_PER_S,
            "p99_ms_at_1000_per_s": TARGET_P99_MS,
            "assignments_met": best["assignments_per_s"] >= TARGET_ASSIGNMENTS_PER_S,
            "p99_met": lat["p99"] is not None and lat["p99"] <= TARGET_P99_MS,
        },
    )
    result["machine"]["loadavg_end"] = uptime()
    result["seconds"] = round(time.monotonic() - started, 1)
    json.dump(result, sys.stdout, indent=2, default=str)
    print()


async def _version(url: str) -> str:
    conn = await bdb.connect(url)
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


if __name__ == "__main__":
    main()
