"""SQL round trips (and, with ``--profile``, where the API's CPU goes) per inbound
message, for the three ingest paths of loadtests/bench_conversations.py:

- ``sms_new_customer``: a signed sandbox SMS webhook from a new number (customer,
  conversation, queued contact, message, usage event);
- ``sms_same_conversation``: a webhook from a customer whose conversation is open;
- ``widget_message``: ``POST /v1/widget/conversations/{id}/messages``.

    .venv/bin/python -m loadtests.count_ingest_queries            # JSON on stdout
    .venv/bin/python -m loadtests.count_ingest_queries --statements --profile

The application runs in this process (``create_app`` behind ``httpx.ASGITransport``, the
tests' way) against a fresh migrated database (SWITCHBOARD_DATABASE_URL, a superuser,
when set; else a throwaway embedded PostgreSQL). Every asyncpg connection's protocol is
wrapped, and each call that waits for the server (simple query, prepare, bind/execute,
close statement, copy) counts as one round trip, attributed to the request whose task
made it (a context variable): the app's background tasks (LISTEN connections, the
outbound sweeper) are not counted. Each path is warmed up first (statement caches
filled), then ``--n`` requests are measured one at a time.

``--profile``: cProfile over the measured requests (all paths), the top functions by
own time and by cumulative time in the JSON. In-process, so without uvicorn's HTTP
parsing and access log: read it for the shares of the application's own work.
Not a timed test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import cProfile
import io
import json
import pstats
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from app.messaging.providers import sandbox
from loadtests import bench_conversations as bc
from loadtests import bench_routing_db as bdb
from loadtests.bench_conversations import _ok

PASSWORD = "count horse battery staple 42"  # noqa: S105 - a throwaway tenant's
# Protocol calls that wait for the server: one round trip each.
ROUND_TRIPS = (
    "query",
    "prepare",
    "bind_execute",
    "bind_execute_many",
    "bind",
    "execute",
    "close_statement",
    "copy_in",
    "copy_out",
)

_request: contextvars.ContextVar[list[tuple[str, str]] | None] = contextvars.ContextVar(
    "count_ingest_request", default=None
)


_QUERIES: dict[int, str] = {}  # prepared statement state -> its SQL


class _CountingProtocol:
    """asyncpg's protocol with every server round trip noted on the current request."""

    def __init__(self, inner: Any) -> None:
        object.__setattr__(self, "_inner", inner)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name not in ROUND_TRIPS:
            return attr

        async def counted(*args: Any, **kwargs: Any) -> Any:
            trips = _request.get()
            if trips is not None:
                trips.append((name, _sql_of(name, args, kwargs)))
            result = await attr(*args, **kwargs)
            if name == "prepare":  # the statement's text, for the bind/execute calls
                _QUERIES[id(result)] = _sql_of(name, args, kwargs)
            return result

        return counted

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._inner, name, value)


def _sql_of(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    if name == "query":
        return str(args[0] if args else kwargs.get("query", ""))
    if name == "prepare":
        return str(args[1] if len(args) > 1 else kwargs.get("query", ""))
    state = args[0] if args else kwargs.get("state")
    return _QUERIES.get(id(state), "")


def install_counter() -> None:
    original = asyncpg.connection.Connection.__init__

    def init(self: Any, protocol: Any, *args: Any, **kwargs: Any) -> None:
        original(self, _CountingProtocol(protocol), *args, **kwargs)

    asyncpg.connection.Connection.__init__ = init  # type: ignore[method-assign]


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=30, help="measured requests per path")
    ap.add_argument("--warmup", type=int, default=10, help="unmeasured requests per path")
    ap.add_argument("--statements", action="store_true", help="list one request's SQL per path")
    ap.add_argument("--profile", action="store_true", help="cProfile the measured requests")
    ap.add_argument("--top", type=int, default=40, help="profile rows to keep")
    ap.add_argument("--profile-out", type=Path, default=None, help="also write the pstats file")
    return ap.parse_args()


class Scenario:
    """One tenant with a queue, a sandbox SMS channel and a web chat channel."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.run = uuid.uuid4().hex[:8]
        self.seq = 0
        self.headers: dict[str, str] = {}
        self.account = f"count-{self.run}"
        self.secret = ""
        self.widget_key = ""
        self.pool: list[str] = []
        self.visitors: list[tuple[dict[str, str], str]] = []

    async def setup(self, admin_url: str, pool: int, visitors: int) -> None:
        c = self.client
        body = _ok(
            await c.post(
                "/v1/signup",
                json={
                    "company_name": "Count Ingest",
                    "email": f"owner-{self.run}@count.example.com",
                    "password": PASSWORD,
                },
            ),
            "signup",
        )
        self.headers = {"Authorization": f"Bearer {body['api_key']}"}
        await bc.enterprise_plan(admin_url, [body["tenant"]["id"]])
        self.secret, self.widget_key = await bc.add_inbound_channels(c, self.headers, self.account)
        for k in range(pool):
            phone = f"+1650{3_000_000 + k}"
            await self.sms(phone)
            self.pool.append(phone)
        for _ in range(visitors):
            self.visitors.append(await bc.open_visitor(c, self.widget_key))

    def _tag(self) -> str:
        self.seq += 1
        return f"count-{self.run}-{self.seq}"

    async def sms(self, phone: str) -> None:
        tag = self._tag()
        body = json.dumps(
            {"message_id": tag, "from": phone, "to": self.account, "text": tag}
        ).encode()
        ts = str(int(time.time()))
        r = await self.client.post(
            f"/v1/webhooks/sms/sandbox/{self.account}",
            content=body,
            headers={
                "Content-Type": "application/json",
                sandbox.TIMESTAMP_HEADER: ts,
                sandbox.SIGNATURE_HEADER: sandbox.signature(self.secret, ts, body),
            },
        )
        counts = _ok(r, "sms webhook")
        if counts.get("received") != 1:
            raise RuntimeError(f"sms webhook: {counts}")

    async def new_customer(self, i: int) -> None:
        await self.sms(f"+1415{4_000_000 + self.seq}")

    async def same_conversation(self, i: int) -> None:
        await self.sms(self.pool[i % len(self.pool)])

    async def widget(self, i: int) -> None:
        headers, conversation = self.visitors[i % len(self.visitors)]
        tag = self._tag()
        r = await self.client.post(
            f"/v1/widget/conversations/{conversation}/messages",
            json={"text": tag, "client_message_id": tag},
            headers=headers,
        )
        if r.status_code != 201:
            raise RuntimeError(f"widget message: {r.status_code} {r.text[:300]}")


def _summary(per_request: list[list[tuple[str, str]]]) -> dict[str, Any]:
    totals = sorted(len(t) for t in per_request)
    kinds: Counter[str] = Counter()
    for trips in per_request:
        kinds.update(name for name, _ in trips)
    n = max(len(per_request), 1)
    return {
        "requests": len(per_request),
        "round_trips_median": totals[len(totals) // 2] if totals else 0,
        "round_trips_min": totals[0] if totals else 0,
        "round_trips_max": totals[-1] if totals else 0,
        "round_trips_mean": round(sum(totals) / n, 2),
        "by_call_mean": {k: round(v / n, 2) for k, v in sorted(kinds.items())},
    }


def _statements(trips: list[tuple[str, str]]) -> list[str]:
    return [f"{name}: {' '.join(sql.split())[:160]}" for name, sql in trips]


def _profile_rows(profiler: cProfile.Profile, key: str, top: int) -> list[str]:
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.strip_dirs().sort_stats(key).print_stats(top)
    lines = out.getvalue().splitlines()
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls")), 0)
    return [line.rstrip() for line in lines[start:] if line.strip()]


async def measure(args: argparse.Namespace, db: bdb.BenchDb, data_dir: Path) -> dict[str, Any]:
    from app.auth.jwt_keys import new_key
    from app.config import Settings
    from app.main import create_app

    key = new_key()
    settings = Settings(
        environment="test",
        data_dir=data_dir,
        jwt_keys=json.dumps({"active_kid": key["kid"], "keys": [key]}),  # type: ignore[arg-type]
        mail_backend="dev",
        widget_messages_per_visitor_per_minute=1_000_000,
        widget_sessions_per_address_per_minute=1_000_000,
    )
    application = create_app(settings, app_database_url=db.app)
    result: dict[str, Any] = {}
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            sc = Scenario(c)
            await sc.setup(db.admin, pool=10, visitors=5)
            paths = {
                "sms_new_customer": sc.new_customer,
                "sms_same_conversation": sc.same_conversation,
                "widget_message": sc.widget,
            }
            # CPU time, not wall time: waiting for PostgreSQL is not the API's cost.
            profiler = cProfile.Profile(time.process_time) if args.profile else None
            cpu: dict[str, float] = {}
            for name, send in paths.items():
                for i in range(args.warmup):
                    await send(i)
                per_request: list[list[tuple[str, str]]] = []
                t0 = time.process_time()
                for i in range(args.n):
                    trips: list[tuple[str, str]] = []
                    token = _request.set(trips)
                    try:
                        if profiler is not None:
                            profiler.enable()
                        await send(args.warmup + i)
                    finally:
                        if profiler is not None:
                            profiler.disable()
                        _request.reset(token)
                    per_request.append(trips)
                cpu[name] = (time.process_time() - t0) * 1000 / max(args.n, 1)
                result[name] = _summary(per_request)
                # In-process: the client's (httpx) CPU is included, and the profiler's.
                result[name]["process_cpu_ms_per_request"] = round(cpu[name], 2)
                if args.statements and per_request:
                    result[name]["statements"] = _statements(per_request[-1])
            if profiler is not None:
                if args.profile_out is not None:
                    profiler.dump_stats(args.profile_out)
                result["profile"] = {
                    "note": "cProfile (process CPU time) over all measured requests, its overhead "
                    "included; a coroutine counts a call per resumption",
                    "by_own_time": _profile_rows(profiler, "tottime", args.top),
                    "by_cumulative_time": _profile_rows(profiler, "cumulative", args.top),
                }
    return result


def main() -> None:
    args = parse()
    install_counter()
    out: dict[str, Any] = {"benchmark": "ingest_round_trips", "n": args.n, "warmup": args.warmup}
    data_dir = Path(tempfile.mkdtemp(prefix="count-ingest-"))
    try:
        with bdb.server(durable=False, stat_statements=False) as srv, bdb.database(srv) as db:
            out["paths"] = asyncio.run(measure(args, db, data_dir))
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    json.dump(out, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
