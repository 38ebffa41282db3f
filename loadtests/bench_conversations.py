"""Conversation ingest benchmark (issue 5): how many customer messages per second the API
takes through the SMS webhook and the web chat widget, at what latency, and whether every
accepted message left exactly one message row and one usage event.

    .venv/bin/python -m loadtests.bench_conversations --json           # full: ~2.5 minutes
    .venv/bin/python -m loadtests.bench_conversations --quick --json   # under a minute

A real server: one ``switchboard api`` process on 127.0.0.1 against a fresh, migrated
database (SWITCHBOARD_DATABASE_URL, a superuser, when set; else a throwaway embedded
PostgreSQL), driven from this process by ``httpx.AsyncClient`` (HTTP/1.1, keep-alive,
``--workers`` concurrent closed-loop workers). No routing workers run: contacts stay
queued.

Setup, through the API as a new tenant would do it: ``--tenants`` signups, each with a
queue taking sms and chat, an SMS channel on the ``sandbox`` provider and a web chat
channel (allowed origin http://localhost:3000) routed to that queue. One thing is SQL:
the tenants are moved from the trial plan (20 concurrent contacts, which phase 2 passes
in a second) to ``enterprise`` (no quota), which only billing can do through the API.

Phases, each ``--seconds`` at ``--workers`` concurrency, one after the other in one run:

1. ``baseline``: ``GET /healthz`` (no database work).
2. ``sms_new_customers``: signed sandbox webhooks, each from a new phone number (a new
   customer, conversation and queued contact per message).
3. ``sms_same_conversation``: signed webhooks from a fixed pool of customers whose
   conversations were opened during setup.
4. ``widget_messages``: ``POST /v1/widget/conversations/{id}/messages`` from visitors
   whose sessions and conversations were opened during setup, each with a unique
   ``client_message_id``. The per-visitor message limit is raised for the run (see the
   JSON's ``scenario.env``): the limiter still runs (one counter upsert per message).

``--baseline-tree DIR --rounds N``: a second ``switchboard api`` runs DIR's app package
(a copy of the tree before a change) on the same database, with the same keys; every
phase runs N times on each server, the servers taking turns, and the JSON's
``phases.<name>.median`` compares them (``runs`` holds each run).

Each message's text is a unique tag; after a phase the database is asked, per tag, how
many messages and usage events exist: ``lost`` (a 2xx without its message or usage
event) and ``duplicated`` (more than one) must be 0. Progress on stderr, one JSON object
on stdout. Not a timed test; see docs/benchmarks.md for the method and the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from app.messaging.providers import sandbox
from loadtests import bench_routing_db as bdb
from loadtests.bench_routing import uptime
from loadtests.bench_routing_phases import log, percentiles
from loadtests.bench_telemetry import free_port

HOST = "127.0.0.1"
ORIGIN = "http://localhost:3000"
PASSWORD = "bench horse battery staple 42"  # noqa: S105 - a throwaway tenant's
# Raised for the run so that a few hundred visitors can post at full speed; the limiter
# itself still runs on every message.
WIDGET_LIMIT = 1_000_000
TABLES = ("messages", "conversations", "customers", "contacts", "usage_events")


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="5 tenants, 10 s phases, 16 workers")
    ap.add_argument("--json", action="store_true", help="JSON only on stdout (the default)")
    ap.add_argument("--tenants", type=int, default=None, help="default 5 (quick) or 50")
    ap.add_argument("--workers", type=int, default=None, help="default 16 (quick) or 32")
    ap.add_argument("--seconds", type=float, default=None, help="per phase: 10 (quick) or 30")
    ap.add_argument("--pool-per-tenant", type=int, default=20, help="SMS customers (phase 3)")
    ap.add_argument("--visitors-per-tenant", type=int, default=8, help="widget visitors")
    ap.add_argument("--timeout", type=float, default=30.0, help="per request, seconds")
    ap.add_argument(
        "--api-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the API process (e.g. SWITCHBOARD_DB_MAX_OVERFLOW=30)",
    )
    ap.add_argument(
        "--baseline-tree",
        type=Path,
        default=None,
        metavar="DIR",
        help="also run a second API from DIR's app package (PYTHONPATH=DIR), e.g. a copy of "
        "the tree before a change, against the same database; the phases alternate between "
        "the two servers",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="with --baseline-tree: each phase this many times per server, alternating "
        "which server goes first; medians in the JSON's comparison",
    )
    ap.add_argument(
        "--setup-concurrency",
        type=int,
        default=8,
        help="requests in flight during setup (the widget's start-chat takes a second "
        "pooled connection while holding one: keep this under the pool size)",
    )
    a = ap.parse_args()
    a.tenants = a.tenants or (5 if a.quick else 50)
    a.workers = a.workers or (16 if a.quick else 32)
    a.seconds = a.seconds or (10.0 if a.quick else 30.0)
    a.api_env = dict(kv.split("=", 1) for kv in a.api_env)
    return a


# ------------------------------------------------------------------------------ server


@dataclass
class Api:
    """``switchboard api`` on 127.0.0.1, its output in ``log``."""

    db: bdb.BenchDb
    workdir: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    env_overrides: dict[str, str] = field(default_factory=dict)
    label: str = "api"
    # Another tree's app package first on the path (--baseline-tree); keys and data are
    # shared through ``workdir``: visitor tokens and channel secrets work on both.
    tree: Path | None = None

    @property
    def log(self) -> Path:
        return self.workdir / f"{self.label}.log"

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        exe = Path(sys.executable).parent / "switchboard"
        argv = [str(exe)] if exe.exists() else [shutil.which("switchboard") or "switchboard"]
        self.port = free_port()
        self.env_overrides = {
            "SWITCHBOARD_WIDGET_MESSAGES_PER_VISITOR_PER_MINUTE": str(WIDGET_LIMIT),
            # Setup opens every visitor's session from 127.0.0.1.
            "SWITCHBOARD_WIDGET_SESSIONS_PER_ADDRESS_PER_MINUTE": str(WIDGET_LIMIT),
            **self.extra_env,
        }
        env = dict(os.environ)
        env.update(
            self.env_overrides,
            SWITCHBOARD_DATABASE_URL=self.db.admin,
            SWITCHBOARD_APP_DATABASE_URL=self.db.app,
            SWITCHBOARD_ROUTER_DATABASE_URL=self.db.router,
            # Keys (encryption, JWT) are generated here, not in the project's .switchboard.
            SWITCHBOARD_DATA_DIR=str(self.workdir),
            SWITCHBOARD_PUBLIC_URL=self.base,
        )
        if self.tree is not None:
            env["PYTHONPATH"] = os.pathsep.join(
                [str(self.tree), *filter(None, [os.environ.get("PYTHONPATH")])]
            )
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(  # noqa: S603 - our own CLI
                [*argv, "api", "--host", HOST, "--port", str(self.port)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"switchboard api exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"switchboard api not ready: {self.log.read_text()[-2000:]}")

    def cpu(self) -> float:
        return bdb.cpu_seconds(self.pid)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


# ------------------------------------------------------------------------------- setup


@dataclass
class Tenant:
    id: str
    headers: dict[str, str]
    account: str = ""
    secret: str = ""
    widget_key: str = ""
    pool: list[str] = field(default_factory=list)  # phone numbers with an open conversation
    visitors: list[tuple[dict[str, str], str]] = field(default_factory=list)  # headers, conv


def _ok(r: httpx.Response, what: str) -> dict[str, Any]:
    if r.status_code // 100 != 2:
        raise RuntimeError(f"{what}: {r.status_code} {r.text[:500]}")
    body: dict[str, Any] = r.json()
    return body


async def make_tenant(client: httpx.AsyncClient, i: int, run: str) -> Tenant:
    r = await client.post(
        "/v1/signup",
        json={
            "company_name": f"Bench Ingest {i}",
            "email": f"owner-{i}-{run}@bench.example.com",
            "password": PASSWORD,
        },
    )
    body = _ok(r, "signup")
    t = Tenant(id=body["tenant"]["id"], headers={"Authorization": f"Bearer {body['api_key']}"})
    t.account = f"bench-{run}-{i}"
    t.secret, t.widget_key = await add_inbound_channels(client, t.headers, t.account)
    return t


async def enterprise_plan(admin_url: str, tenant_ids: list[str]) -> None:
    """The tenants moved to the enterprise plan (no quota; the trial allows 20
    concurrent contacts). SQL, not the API: a plan changes through billing."""
    conn = await bdb.connect(admin_url)
    try:
        await conn.execute(
            "UPDATE tenants SET plan = 'enterprise' WHERE id = ANY($1::uuid[])",
            [uuid.UUID(t) for t in tenant_ids],
        )
    finally:
        await conn.close()


async def add_inbound_channels(
    client: httpx.AsyncClient, headers: dict[str, str], account: str
) -> tuple[str, str]:
    """A queue taking sms and chat, a sandbox SMS channel on ``account`` and a web chat
    channel (allowed origin ``ORIGIN``) routed to it: the SMS channel's webhook secret
    and the widget key."""
    q = _ok(
        await client.post(
            "/v1/queues", json={"name": "Inbound", "channels": ["sms", "chat"]}, headers=headers
        ),
        "queue",
    )
    sms = _ok(
        await client.post(
            "/v1/channels",
            json={
                "type": "sms",
                "name": "SMS",
                "config": {
                    "provider": "sandbox",
                    "provider_account_id": account,
                    "queue_id": q["id"],
                },
            },
            headers=headers,
        ),
        "sms channel",
    )
    chat = _ok(
        await client.post(
            "/v1/channels",
            json={
                "type": "webchat",
                "name": "Chat",
                "config": {"allowed_origins": [ORIGIN], "queue_id": q["id"]},
            },
            headers=headers,
        ),
        "webchat channel",
    )
    return sms["webhook_secret"], chat["config"]["widget_key"]


def signed(t: Tenant, payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    ts = str(int(time.time()))
    return body, {
        "Content-Type": "application/json",
        sandbox.TIMESTAMP_HEADER: ts,
        sandbox.SIGNATURE_HEADER: sandbox.signature(t.secret, ts, body),
    }


async def open_pool(client: httpx.AsyncClient, t: Tenant, i: int, n: int, run: str) -> None:
    """``n`` SMS customers of tenant ``i``, each with a conversation opened by one
    message."""
    for k in range(n):
        phone = f"+1650{1_000_000 + i * 1000 + k}"
        body, headers = signed(
            t,
            {"message_id": f"setup-{run}-{i}-{k}", "from": phone, "to": t.account, "text": "hi"},
        )
        r = await client.post(
            f"/v1/webhooks/sms/sandbox/{t.account}", content=body, headers=headers
        )
        _ok(r, "pool message")
        t.pool.append(phone)


async def open_visitor(client: httpx.AsyncClient, widget_key: str) -> tuple[dict[str, str], str]:
    """A widget session with a conversation opened by one message: the visitor's
    headers and the conversation's id."""
    s = _ok(
        await client.post(
            "/v1/widget/sessions",
            json={},
            headers={"X-Widget-Key": widget_key, "Origin": ORIGIN},
        ),
        "widget session",
    )
    h = {"Authorization": f"Bearer {s['visitor_token']}", "Origin": ORIGIN}
    c = _ok(
        await client.post("/v1/widget/conversations", json={"text": "hello"}, headers=h),
        "start chat",
    )
    return h, c["conversation"]["id"]


async def open_visitors(client: httpx.AsyncClient, t: Tenant, n: int) -> None:
    for _ in range(n):
        t.visitors.append(await open_visitor(client, t.widget_key))


async def gather_limited(jobs: list[Callable[[], Awaitable[None]]], limit: int) -> None:
    sem = asyncio.Semaphore(limit)

    async def one(job: Callable[[], Awaitable[None]]) -> None:
        async with sem:
            await job()

    await asyncio.gather(*(one(j) for j in jobs))


async def setup(
    client: httpx.AsyncClient, args: argparse.Namespace, db: bdb.BenchDb, run: str
) -> tuple[list[Tenant], dict[str, float]]:
    took: dict[str, float] = {}
    t0 = time.perf_counter()
    tenants: list[Tenant] = [None] * args.tenants  # type: ignore[list-item]

    async def mk(i: int) -> None:
        tenants[i] = await make_tenant(client, i, run)

    # Signup hashes a password (argon2id): a few at a time.
    await gather_limited([lambda i=i: mk(i) for i in range(args.tenants)], 4)
    took["tenants_s"] = round(time.perf_counter() - t0, 1)
    await enterprise_plan(db.admin, [t.id for t in tenants])
    t1 = time.perf_counter()
    await gather_limited(
        [
            lambda i=i, t=t: open_pool(client, t, i, args.pool_per_tenant, run)
            for i, t in enumerate(tenants)
        ],
        args.setup_concurrency,
    )
    took["sms_pool_s"] = round(time.perf_counter() - t1, 1)
    t2 = time.perf_counter()
    await gather_limited(
        [lambda t=t: open_visitors(client, t, args.visitors_per_tenant) for t in tenants],
        args.setup_concurrency,
    )
    took["visitors_s"] = round(time.perf_counter() - t2, 1)
    return tenants, took


# ------------------------------------------------------------------------------- phases

# A request: (method, path, body or None, headers, tag or None). The tag is the message
# text, unique per request, checked in the database afterwards.
Request = tuple[str, str, bytes | None, dict[str, str], str | None]


@dataclass
class Sample:
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    ok_tags: list[str] = field(default_factory=list)
    failed_tags: list[str] = field(default_factory=list)


async def drive(
    client: httpx.AsyncClient, make: Callable[[int], Request], workers: int, seconds: float
) -> tuple[Sample, float]:
    """``workers`` closed-loop workers for ``seconds``; a request counts when it was
    sent before the deadline (the last ones finish after it)."""
    sample = Sample()
    seq = iter(range(10**12))
    started = time.perf_counter()
    deadline = started + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            method, path, body, headers, tag = make(next(seq))
            t = time.perf_counter()
            try:
                r = await client.request(method, path, content=body, headers=headers)
                status = str(r.status_code)
                ok = r.status_code // 100 == 2
            except httpx.HTTPError as exc:
                status, ok = type(exc).__name__, False
            sample.latencies_ms.append((time.perf_counter() - t) * 1000.0)
            sample.statuses[status] += 1
            if tag is not None:
                (sample.ok_tags if ok else sample.failed_tags).append(tag)

    await asyncio.gather(*(worker() for _ in range(workers)))
    return sample, time.perf_counter() - started


async def table_counts(url: str) -> dict[str, int]:
    conn = await bdb.connect(url)
    try:
        return {t: int(await conn.fetchval(f"SELECT count(*) FROM {t}")) for t in TABLES}  # noqa: S608
    finally:
        await conn.close()


async def check_rows(url: str, prefix: str, sample: Sample) -> dict[str, Any]:
    """Per tag (message text): messages and usage events written. Superuser: no RLS."""
    conn = await bdb.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT m.body AS tag, count(DISTINCT m.id) AS messages, count(u.id) AS usage "
            "FROM messages m LEFT JOIN usage_events u ON u.tenant_id = m.tenant_id "
            "AND u.idempotency_key = 'message:' || m.id::text "
            "WHERE m.body LIKE $1 GROUP BY m.body",
            prefix + "%",
        )
    finally:
        await conn.close()
    found = {r["tag"]: (int(r["messages"]), int(r["usage"])) for r in rows}
    ok = set(sample.ok_tags)
    return {
        "accepted_2xx": len(sample.ok_tags),
        "messages_found": sum(m for m, _ in found.values()),
        "usage_events_found": sum(u for _, u in found.values()),
        "lost": sum(1 for tag in ok if found.get(tag, (0, 0))[0] == 0),
        "duplicated": sum(max(0, m - 1) for m, _ in found.values()),
        "usage_lost": sum(1 for tag in ok if found.get(tag, (0, 0))[1] == 0),
        "usage_duplicated": sum(max(0, u - m) for m, u in found.values()),
        # Written although the client saw no 2xx (a timeout, a dropped connection).
        "written_without_2xx": sum(1 for tag in found if tag not in ok),
        "failed_requests_written": sum(1 for tag in sample.failed_tags if tag in found),
    }


def postgres_cpu(postmaster: int | None) -> float:
    """CPU of the server's processes, those already gone included: the live ones (as
    bench_routing counts them) plus what the postmaster has reaped (cutime + cstime),
    so a backend or autovacuum worker that exits mid-phase is not subtracted."""
    if postmaster is None:
        return 0.0
    try:
        fields = Path(f"/proc/{postmaster}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    reaped = (int(fields[13]) + int(fields[14])) / bdb.CLK_TCK
    return bdb.server_cpu(postmaster) + reaped


async def sample_waits(url: str, name: str, stop: asyncio.Event) -> dict[str, float]:
    """Every 0.25 s, what the database's client backends are doing (pg_stat_activity):
    ``active`` (running a statement, not waiting), ``Lock:...`` / ``LWLock:...`` /
    ``IO:...`` (running, waiting for that), ``idle in transaction`` (in a transaction,
    waiting for the API's next statement), ``idle`` (in the pool). Returned as the mean
    number of backends in each state, those of 0.05 or more."""
    conn = await bdb.connect(url)
    seen: Counter[str] = Counter()
    samples = 0
    try:
        while not stop.is_set():
            rows = await conn.fetch(
                "SELECT CASE WHEN state <> 'active' THEN state WHEN wait_event_type IS NULL "
                "THEN 'active' ELSE wait_event_type || ':' || wait_event END AS what "
                "FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid() "
                "AND backend_type = 'client backend'",
                name,
            )
            seen.update(str(r["what"]) for r in rows)
            samples += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.25)
    finally:
        await conn.close()
    means = {k: round(v / max(samples, 1), 2) for k, v in seen.most_common()}
    return {k: v for k, v in means.items() if v >= 0.05}


@dataclass
class Meter:
    api: Api
    postmaster: int | None
    api_cpu: float = 0.0
    pg_cpu: float = 0.0
    client_cpu: float = 0.0

    def start(self) -> None:
        self.api_cpu = self.api.cpu()
        self.pg_cpu = postgres_cpu(self.postmaster)
        self.client_cpu = time.process_time()

    def since(self, requests: int, elapsed: float) -> dict[str, Any]:
        api = self.api.cpu() - self.api_cpu
        pg = postgres_cpu(self.postmaster) - self.pg_cpu
        client = time.process_time() - self.client_cpu
        per = max(requests, 1)
        return {
            "api_cores": round(api / elapsed, 2),
            "postgres_cores": round(pg / elapsed, 2),
            "client_cores": round(client / elapsed, 2),
            "api_cpu_ms_per_request": round(api * 1000 / per, 3),
            "postgres_cpu_ms_per_request": round(pg * 1000 / per, 3),
            "client_cpu_ms_per_request": round(client * 1000 / per, 3),
            # What one API process could take with a core to itself (this machine is
            # shared: the measured rate is what it got).
            "rps_per_api_core": round(per / api, 1) if api > 0 else None,
        }


async def phase(
    name: str,
    client: httpx.AsyncClient,
    args: argparse.Namespace,
    db: bdb.BenchDb,
    meter: Meter,
    make: Callable[[int], Request],
    prefix: str | None,
) -> dict[str, Any]:
    log(f"phase {name}: {args.seconds:.0f} s at {args.workers} workers")
    before = await table_counts(db.admin) if prefix else None
    load0 = uptime()
    stop = asyncio.Event()
    waits = asyncio.create_task(sample_waits(db.admin, db.name, stop))
    meter.start()
    sample, elapsed = await drive(client, make, args.workers, args.seconds)
    cpu = meter.since(len(sample.latencies_ms), elapsed)
    stop.set()
    n = len(sample.latencies_ms)
    out: dict[str, Any] = {
        "requests": n,
        "seconds": round(elapsed, 2),
        "throughput_rps": round(n / elapsed, 1),
        "statuses": dict(sorted(sample.statuses.items())),
        "errors": {k: v for k, v in sample.statuses.items() if not k.startswith("2")},
        "latency_ms": percentiles(sample.latencies_ms),
        "cpu": cpu,
        "db_backends": await waits,
        "loadavg_before": load0,
        "loadavg_after": uptime(),
    }
    if prefix is not None and before is not None:
        after = await table_counts(db.admin)
        out["rows_written"] = {t: after[t] - before[t] for t in TABLES}
        out["check"] = await check_rows(db.admin, prefix, sample)
    c = out.get("check", {})
    log(
        f"  {n} requests, {out['throughput_rps']}/s, p50/p95/p99 "
        f"{out['latency_ms']['p50']}/{out['latency_ms']['p95']}/{out['latency_ms']['p99']} ms, "
        f"errors {out['errors']}"
        + (f", lost {c['lost']}, duplicated {c['duplicated']}" if c else "")
    )
    return out


def sms_request(t: Tenant, run: str, tag: str, phone: str) -> Request:
    body, headers = signed(t, {"message_id": f"{tag}", "from": phone, "to": t.account, "text": tag})
    return ("POST", f"/v1/webhooks/sms/sandbox/{t.account}", body, headers, tag)


@dataclass
class Target:
    """A server under test, its client and its CPU meter."""

    label: str
    client: httpx.AsyncClient
    meter: Meter


# What the comparison takes the median of, per server and phase.
COMPARED = {
    "throughput_rps": lambda r: r["throughput_rps"],
    "p50_ms": lambda r: r["latency_ms"]["p50"],
    "p95_ms": lambda r: r["latency_ms"]["p95"],
    "p99_ms": lambda r: r["latency_ms"]["p99"],
    "api_cpu_ms_per_request": lambda r: r["cpu"]["api_cpu_ms_per_request"],
    "postgres_cpu_ms_per_request": lambda r: r["cpu"]["postgres_cpu_ms_per_request"],
    "rps_per_api_core": lambda r: r["cpu"]["rps_per_api_core"],
}


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, get in COMPARED.items():
        values = sorted(v for v in (get(r) for r in runs) if v is not None)
        if values:
            mid = len(values) // 2
            even = len(values) % 2 == 0
            out[key] = round((values[mid - 1] + values[mid]) / 2, 3) if even else values[mid]
    checks = [r["check"] for r in runs if "check" in r]
    if checks:
        out["lost"] = sum(c["lost"] + c["usage_lost"] for c in checks)
        out["duplicated"] = sum(c["duplicated"] + c["usage_duplicated"] for c in checks)
    out["errors"] = sum(sum(r["errors"].values()) for r in runs)
    return out


async def run_phases(
    targets: list[Target],
    args: argparse.Namespace,
    db: bdb.BenchDb,
    tenants: list[Tenant],
    run: str,
) -> dict[str, Any]:
    """Every phase on every target, ``args.rounds`` times each; the targets take turns
    (the first goes first in even rounds, last in odd ones) so that the machine's other
    load falls on both alike."""
    rng = random.Random(5)
    phases: dict[str, Any] = {}
    numbers = iter(range(10**7))  # new customers' numbers, unique across runs

    async def each(
        name: str, make_for: Callable[[str], Callable[[int], Request]], tagged: bool
    ) -> None:
        runs: dict[str, list[dict[str, Any]]] = {t.label: [] for t in targets}
        for r in range(args.rounds):
            for t in targets if r % 2 == 0 else targets[::-1]:
                prefix = f"bench-{run}-{name}-{t.label}-{r}-"
                out = await phase(
                    f"{name} [{t.label}, round {r + 1}]",
                    t.client,
                    args,
                    db,
                    t.meter,
                    make_for(prefix),
                    prefix if tagged else None,
                )
                runs[t.label].append(out)
        if len(targets) == 1 and args.rounds == 1:
            phases[name] = runs[targets[0].label][0]
        else:
            phases[name] = {
                "median": {label: medians(rs) for label, rs in runs.items()},
                "runs": runs,
            }

    def baseline(prefix: str) -> Callable[[int], Request]:
        return lambda i: ("GET", "/healthz", None, {}, None)

    def new_customer(prefix: str) -> Callable[[int], Request]:
        def make(i: int) -> Request:
            t = tenants[i % len(tenants)]
            return sms_request(t, run, f"{prefix}{i}", f"+1415{2_000_000 + next(numbers)}")

        return make

    def same_conversation(prefix: str) -> Callable[[int], Request]:
        def make(i: int) -> Request:
            t = tenants[rng.randrange(len(tenants))]
            return sms_request(t, run, f"{prefix}{i}", rng.choice(t.pool))

        return make

    visitors = [v for t in tenants for v in t.visitors]

    def widget(prefix: str) -> Callable[[int], Request]:
        def make(i: int) -> Request:
            headers, conversation = visitors[rng.randrange(len(visitors))]
            tag = f"{prefix}{i}"
            body = json.dumps({"text": tag, "client_message_id": f"c-{tag}"[:100]}).encode()
            return (
                "POST",
                f"/v1/widget/conversations/{conversation}/messages",
                body,
                headers | {"Content-Type": "application/json"},
                tag,
            )

        return make

    await each("baseline", baseline, False)
    await each("sms_new_customers", new_customer, True)
    await each("sms_same_conversation", same_conversation, True)
    await each("widget_messages", widget, True)
    return phases


async def bench(
    args: argparse.Namespace, apis: list[Api], db: bdb.BenchDb, postmaster: int | None, run: str
) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=args.workers, max_keepalive_connections=args.workers)
    async with contextlib.AsyncExitStack() as stack:
        targets = [
            Target(
                api.label,
                await stack.enter_async_context(
                    httpx.AsyncClient(
                        base_url=api.base,
                        http1=True,
                        http2=False,
                        limits=limits,
                        timeout=args.timeout,
                    )
                ),
                Meter(api, postmaster),
            )
            for api in apis
        ]
        log(f"setup: {args.tenants} tenants through the API ({apis[0].label})")
        tenants, took = await setup(targets[0].client, args, db, run)
        log(f"  setup took {took}")
        phases = await run_phases(targets, args, db, tenants, run)
    return {"setup_seconds": took, "phases": phases}


def main() -> None:
    args = parse()
    started = time.monotonic()
    run = uuid.uuid4().hex[:8]
    result: dict[str, Any] = {
        "benchmark": "conversation_ingest",
        "mode": "quick" if args.quick else "full",
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg_start": uptime(),
        },
    }
    workdir = Path(tempfile.mkdtemp(prefix="bench-conversations-"))
    with bdb.server(durable=False, stat_statements=False) as srv:
        result["machine"]["postgres"] = "embedded" if srv.embedded else "SWITCHBOARD_DATABASE_URL"
        result["machine"]["fsync"] = False if srv.embedded else "server's own"
        with bdb.database(srv) as db:
            log(f"database {db.name} migrated; starting switchboard api")
            apis = [Api(db, workdir, extra_env=args.api_env, label="current")]
            if args.baseline_tree is not None:
                apis.append(
                    Api(
                        db,
                        workdir,
                        extra_env=args.api_env,
                        label="baseline",
                        tree=args.baseline_tree.resolve(),
                    )
                )
            api = apis[0]
            kept = Path(tempfile.gettempdir()) / f"bench-conversations-api-{os.getpid()}.log"
            try:
                for one in apis:  # one after the other: the first generates the keys
                    one.start()
                    log(f"  {one.label} api pid {one.pid} on {one.base}")
                out = asyncio.run(bench(args, apis, db, srv.postmaster_pid(), run))
                rss = {one.label: bdb.peak_rss_mb(one.pid) for one in apis}
                result["api_peak_rss_mb"] = rss if len(apis) > 1 else rss[api.label]
            finally:
                for one in apis:
                    one.stop()
                # The logs outlive the run; the generated keys do not.
                with contextlib.suppress(OSError):
                    shutil.copyfile(api.log, kept)
                for one in apis[1:]:
                    with contextlib.suppress(OSError):
                        shutil.copyfile(one.log, kept.with_suffix(f".{one.label}.log"))
                shutil.rmtree(workdir, ignore_errors=True)
        log("database dropped")
    result["scenario"] = {
        "tenants": args.tenants,
        "workers": args.workers,
        "seconds_per_phase": args.seconds,
        "sms_pool_customers": args.tenants * args.pool_per_tenant,
        "widget_visitors": args.tenants * args.visitors_per_tenant,
        "server": "switchboard api (1 uvicorn process, its default logging), 127.0.0.1",
        "client": "httpx.AsyncClient in the benchmark process, HTTP/1.1 keep-alive",
        "setup": "signup, queue, channels, widget sessions through the API; "
        "tenants' plan set to enterprise by SQL",
        "routing_workers": 0,
        "env": api.env_overrides,
        "servers": {one.label: str(one.tree) if one.tree else "this tree" for one in apis},
        "rounds": args.rounds,
    }
    result.update(out)
    result["machine"]["loadavg_end"] = uptime()
    result["api_log"] = str(kept)
    result["seconds"] = round(time.monotonic() - started, 1)
    json.dump(result, sys.stdout, indent=2, default=str)
    print()


if __name__ == "__main__":
    main()
