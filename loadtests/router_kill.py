"""Crash safety of the routing workers, measured: the kill scenario, N times.

Each run starts three ``switchboard router`` processes (lease 2 s, offer time-out 5 s)
against a throwaway database, provisions 30 tenants with a chat queue, a routing profile
and 4 agents each, enqueues 2000 contacts while the agents accept and complete their
offers (one in ten rejected, so contacts are offered again), SIGKILLs the router holding
the most shards once 40 % of the contacts are in, and lets the traffic drain. The same
scenario as ``tests/routing/test_router_crash.py`` (``tests/routing/traffic.py``).

Prints one JSON document: per run the takeover time (kill to every dead shard leased by
a survivor), the contacts, offers and re-offers, double offers found (overlapping live
reservations of one contact, or two live ones in a sample), capacity violations (an
agent over capacity, or used points that differ from the points of their live work, in
any sample), and a summary. Exits 1 when any run lost a contact or broke an invariant.

    .venv/bin/python loadtests/router_kill.py --runs 5 --json
    SWITCHBOARD_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python loadtests/router_kill.py --runs 10 --contacts 3000

PostgreSQL: SWITCHBOARD_DATABASE_URL (a superuser or the owner role's server URL) when
set, else an embedded server started for the run. Not a timed test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg

from app.config import Settings
from app.db import bootstrap
from tests.routing.traffic import KillFigures, reset_database, run_kill_scenario


@contextlib.contextmanager
def server() -> Iterator[str]:
    url = os.environ.get("SWITCHBOARD_DATABASE_URL")
    if url:
        yield url
        return
    from app.db.embedded import EmbeddedPostgres

    base = Path(tempfile.mkdtemp(prefix="switchboard-router-kill-"))
    base.chmod(0o755)
    pg = EmbeddedPostgres(base / "data", durable=False)
    pg.start()
    try:
        yield pg.url("postgres")
    finally:
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)


def ok(fig: KillFigures) -> bool:
    return (
        not fig.errors
        and fig.details.get("states") == {"completed": fig.contacts}
        and fig.details.get("completed_per_contact_ok") is True
        and fig.double_offers == 0
        and fig.capacity_violations == 0
        and fig.early_takeovers == 0
        and fig.epochs_increased
    )


def summary(figs: list[KillFigures]) -> dict[str, Any]:
    takeovers = [f.takeover_seconds for f in figs if ok(f)] or [0.0]
    return {
        "runs": len(figs),
        "passed": sum(ok(f) for f in figs),
        "takeover_seconds": {
            "min": min(takeovers),
            "median": statistics.median(takeovers),
            "max": max(takeovers),
            "bound": figs[0].takeover_bound_seconds,
            "within_bound": sum(f.takeover_seconds <= f.takeover_bound_seconds for f in figs),
        },
        "contacts": sum(f.contacts for f in figs),
        "completed": sum(f.completed for f in figs),
        "offers": sum(f.offers for f in figs),
        "reoffers": sum(f.reoffers for f in figs),
        "double_offers": sum(f.double_offers for f in figs),
        "capacity_violations": sum(f.capacity_violations for f in figs),
        "early_takeovers": sum(f.early_takeovers for f in figs),
        "samples": sum(f.samples for f in figs),
        "run_seconds_median": statistics.median(f.run_seconds for f in figs),
    }


def brief(fig: KillFigures) -> dict[str, Any]:
    out = {k: v for k, v in fig.as_dict().items() if k != "details"}
    out["ok"] = ok(fig)
    for key in ("killed_at_seconds", "enqueued_at_kill", "waiting_in_dead_shards_at_kill"):
        out[key] = fig.details.get(key)
    if not ok(fig):
        out["details"] = fig.details
    return out


async def main(args: argparse.Namespace) -> int:
    settings = Settings(environment="test")
    name = f"sb_router_kill_{os.getpid()}"
    logs = Path(tempfile.mkdtemp(prefix="router-kill-logs-"))
    figs: list[KillFigures] = []
    with server() as url:
        await bootstrap.ensure_database(settings, url, name)
        urls = bootstrap.urls_for(settings, url, database=name)
        try:
            await bootstrap.migrate_async(urls.admin)
            admin = await asyncpg.connect(**bootstrap.asyncpg_kwargs(urls.admin))
            try:
                for i in range(args.runs):
                    await reset_database(admin)
                    try:
                        fig = await run_kill_scenario(
                            urls,
                            admin,
                            logs,
                            tenants=args.tenants,
                            agents_per_tenant=args.agents,
                            contacts_total=args.contacts,
                            lease_seconds=args.lease_seconds,
                            offer_timeout_seconds=args.offer_timeout_seconds,
                            late_share=args.late_share,
                        )
                    except AssertionError as exc:  # not drained, no takeover: a failed run
                        fig = KillFigures(errors=[str(exc)[:2000]])
                    figs.append(fig)
                    if not args.json:
                        print(f"run {i + 1}: {json.dumps(brief(fig), default=str)}", flush=True)
            finally:
                await admin.close()
        finally:
            await bootstrap.drop_database(url, name)
    shutil.rmtree(logs, ignore_errors=True)
    doc = {
        "config": {
            "runs": args.runs,
            "routers": 3,
            "tenants": args.tenants,
            "agents_per_tenant": args.agents,
            "contacts": args.contacts,
            "lease_seconds": args.lease_seconds,
            "offer_timeout_seconds": args.offer_timeout_seconds,
            "late_share": args.late_share,
        },
        "summary": summary(figs),
        "runs": [brief(f) for f in figs],
    }
    print(json.dumps(doc, indent=2, default=str))
    return 0 if all(ok(f) for f in figs) else 1


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--json", action="store_true", help="print only the JSON document")
    p.add_argument("--tenants", type=int, default=30)
    p.add_argument("--agents", type=int, default=4, help="agents per tenant")
    p.add_argument("--contacts", type=int, default=2000)
    p.add_argument("--lease-seconds", type=float, default=2.0)
    p.add_argument("--offer-timeout-seconds", type=float, default=5.0)
    p.add_argument(
        "--late-share",
        type=float,
        default=0.0,
        help="share of offers answered right at their expiry (races the worker's time-out)",
    )
    return p.parse_args()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse())))
