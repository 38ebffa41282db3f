"""`switchboard router`: a routing worker. Run any number against one PostgreSQL.

- Leases: every worker heartbeats a row in ``router_workers``; its fair share is the
  shard count divided by the live workers. It renews the leases it holds, claims free or
  expired shards up to its share, and gives back what exceeds it, so workers that join
  or leave rebalance within one lease period. A lease carries an epoch that increases
  with each new owner.
- Wake-ups: LISTEN ``sb_routing`` (the API and other workers NOTIFY the shard with new
  work). Between notifications the worker sleeps until the earliest ``due_at`` of its
  shards (offer time-outs, wrap-up timers, relaxation steps, heartbeats). Nothing polls
  while idle; only the lease heartbeat ticks.
- Crash safety: everything is in PostgreSQL. A killed worker's transaction rolls back;
  its leases expire and another worker takes the shards and their due work over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg

from app.routing.metrics import RouterMetrics
from app.routing.rounds import RoundResult, run_round
from app.routing.shards import SHARD_COUNT
from app.routing.transitions import ROUTING_CHANNEL

log = logging.getLogger("switchboard.router")


@dataclass
class RouterConfig:
    url: str  # the routing workers' role (SQLAlchemy-style URL)
    lease_seconds: float = 10.0
    offer_timeout_seconds: float = 20.0
    batch_tenants: int = 200
    max_offers_per_tenant: int = 50
    worker_id: str = field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    )


@dataclass
class RouterStats:
    rounds: int = 0
    offers: int = 0
    timed_out: int = 0
    claimed: int = 0
    released: int = 0
    latencies_ms: list[float] = field(default_factory=list)


class Router:
    def __init__(self, config: RouterConfig) -> None:
        self.config = config
        self.id = config.worker_id
        self.shards: set[int] = set()
        self.stats = RouterStats()
        self._wake = asyncio.Event()
        self._rebalance = asyncio.Event()
        self._stop = asyncio.Event()
        self.keep_latencies = False
        self.metrics: RouterMetrics | None = None

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        while not self._stop.is_set():
            try:
                await self._session()
            except Exception as exc:
                # A lost connection or an unexpected error: everything is in
                # PostgreSQL, so start over with fresh connections. The leases stay
                # ours if we are back within the lease time; otherwise others took them.
                log.warning("router %s restarting after: %r", self.id, exc)
                await _wait(self._stop, 1.0)

    async def _session(self) -> None:
        """One life of the worker's three connections; returns on stop, raises when any
        of its loops or connections fails (the lease loop stops renewing with it)."""
        from app.db.bootstrap import asyncpg_kwargs

        kw = asyncpg_kwargs(self.config.url)
        conns: list[asyncpg.Connection] = []
        tasks: list[asyncio.Task[None]] = []
        lost = asyncio.Event()
        try:
            for _ in range(3):
                conn = await asyncpg.connect(**kw)
                conn.add_termination_listener(lambda _c: lost.set())
                conns.append(conn)
            listen, work, lease = conns
            await listen.add_listener(ROUTING_CHANNEL, self._on_notify)
            await self._heartbeat(lease)
            await self._balance(lease)
            tasks = [
                asyncio.create_task(self._lease_loop(lease)),
                asyncio.create_task(self._route_loop(work)),
                asyncio.create_task(self._stop.wait()),  # type: ignore[arg-type]
                asyncio.create_task(lost.wait()),  # type: ignore[arg-type]
            ]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in tasks[:2]:
                if t.done() and not t.cancelled() and t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
            if lost.is_set() and not self._stop.is_set():
                raise ConnectionError("a database connection was lost")
            await self._leave(lease)
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(BaseException):
                    await t
            for c in conns:
                with contextlib.suppress(Exception):
                    await c.close()

    def stop(self) -> None:
        self._stop.set()

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        if payload == "rebalance":  # a worker left cleanly: its shards are free now
            self._rebalance.set()
            return
        try:
            shard = int(payload)
        except ValueError:
            return
        if shard in self.shards:
            self._wake.set()

    # ------------------------------------------------------------------ leases

    async def _heartbeat(self, conn: asyncpg.Connection) -> None:
        await conn.execute(
            """
            INSERT INTO router_workers (id, host, pid, started_at, heartbeat_at)
            VALUES ($1, $2, $3, now(), now())
            ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()
            """,
            self.id,
            socket.gethostname()[:255],
            os.getpid(),
        )

    async def _lease_loop(self, conn: asyncpg.Connection) -> None:
        interval = self.config.lease_seconds / 3
        while True:
            await _wait(self._rebalance, interval)
            self._rebalance.clear()
            try:
                await self._heartbeat(conn)
                await self._balance(conn)
            except asyncpg.PostgresError as exc:
                # A conflict with another worker's balance: the next tick retries. A
                # lost connection is not caught: the worker restarts its session.
                log.warning("lease renewal failed: %s", exc)

    async def _balance(self, conn: asyncpg.Connection) -> None:
        """Renew, claim up to the fair share, give back the surplus."""
        ttl = self.config.lease_seconds
        async with conn.transaction():
            await conn.execute(
                "DELETE FROM router_workers WHERE heartbeat_at < now() - make_interval(secs => $1)",
                ttl,
            )
            live = await conn.fetchval("SELECT count(*) FROM router_workers") or 1
            share = math.ceil(SHARD_COUNT / live)
            held = await conn.fetch(
                """
                UPDATE routing_shards
                   SET lease_expires_at = now() + make_interval(secs => $2)
                 WHERE owner = $1 AND lease_expires_at > now()
                RETURNING shard
                """,
                self.id,
                ttl,
            )
            mine = sorted(r["shard"] for r in held)
            surplus = mine[share:] if len(mine) > share else []
            if surplus:
                await conn.execute(
                    "UPDATE routing_shards SET owner = NULL, lease_expires_at = NULL "
                    "WHERE owner = $1 AND shard = ANY($2::smallint[])",
                    self.id,
                    surplus,
                )
                self.stats.released += len(surplus)
                mine = mine[:share]
            claimed: list[int] = []
            if len(mine) < share:
                rows = await conn.fetch(
                    """
                    UPDATE routing_shards s
                       SET owner = $1, lease_expires_at = now() + make_interval(secs => $2),
                           epoch = s.epoch + 1
                     WHERE s.shard IN (
                           SELECT shard FROM routing_shards
                            WHERE owner IS NULL OR lease_expires_at IS NULL
                               OR lease_expires_at <= now()
                            ORDER BY shard
                            LIMIT $3
                            FOR UPDATE SKIP LOCKED)
                    RETURNING s.shard
                    """,
                    self.id,
                    ttl,
                    share - len(mine),
                )
                claimed = [r["shard"] for r in rows]
                self.stats.claimed += len(claimed)
        before = self.shards
        self.shards = set(mine) | set(claimed)
        if self.shards - before:
            log.info("router %s now holds %d shards", self.id, len(self.shards))
            self._wake.set()  # new shards may have work due already

    async def _leave(self, conn: asyncpg.Connection) -> None:
        """A clean stop hands the shards back at once (a crash waits for the lease)."""
        with contextlib.suppress(Exception):
            async with conn.transaction():
                await conn.execute(
                    "UPDATE routing_shards SET owner = NULL, lease_expires_at = NULL "
                    "WHERE owner = $1",
                    self.id,
                )
                await conn.execute("DELETE FROM router_workers WHERE id = $1", self.id)
                await conn.execute("SELECT pg_notify($1, 'rebalance')", ROUTING_CHANNEL)

    # ------------------------------------------------------------------ routing

    async def _route_loop(self, conn: asyncpg.Connection) -> None:
        failures = 0
        while True:
            self._wake.clear()
            try:
                result = await self.round(conn)
                failures = 0
            except (asyncpg.InterfaceError, OSError):
                raise  # the connection is gone: the session restarts
            except Exception as exc:
                # All rolled back. A deadlock with a concurrent change or a lost lease
                # passes; anything else may be one tenant's data, so each due tenant
                # is routed alone and those that fail are held back, not the batch.
                failures += 1
                log.warning("routing round failed (%d in a row): %r", failures, exc)
                if _sqlstate(exc) not in TRANSIENT_SQLSTATES:
                    await self._isolate(conn)
                await asyncio.sleep(min(0.05 * 2 ** min(failures - 1, 6), 2.0))
                continue
            if result.more or result.tenants >= self.config.batch_tenants:
                continue
            delay = await self._until_next_due(conn)
            if delay is not None and delay <= 0:
                continue
            await _wait(self._wake, delay)

    async def _isolate(self, conn: asyncpg.Connection) -> None:
        """Route each due tenant of our shards on its own; a tenant whose round still
        fails is held back for ``QUARANTINE_SECONDS`` (and logged), so the others go on."""
        due = await conn.fetch(
            "SELECT tenant_id FROM routing_work "
            "WHERE shard = ANY($1::smallint[]) AND due_at <= now() ORDER BY due_at LIMIT $2",
            sorted(self.shards),
            self.config.batch_tenants,
        )
        for row in due:
            tenant_id = row["tenant_id"]
            try:
                await run_round(
                    conn,
                    worker_id=self.id,
                    shards=sorted(self.shards),
                    batch_tenants=1,
                    max_offers_per_tenant=self.config.max_offers_per_tenant,
                    offer_timeout_seconds=self.config.offer_timeout_seconds,
                    only=[tenant_id],
                )
            except (asyncpg.InterfaceError, OSError):
                raise
            except Exception as exc:
                log.error(
                    "routing of tenant %s failed, held back %d s: %r",
                    tenant_id,
                    QUARANTINE_SECONDS,
                    exc,
                )
                await conn.execute(
                    "UPDATE routing_work SET due_at = now() + make_interval(secs => $2) "
                    "WHERE tenant_id = $1",
                    tenant_id,
                    QUARANTINE_SECONDS,
                )

    async def round(self, conn: asyncpg.Connection) -> RoundResult:
        if not self.shards:
            return RoundResult()
        started = time.perf_counter()
        result = await run_round(
            conn,
            worker_id=self.id,
            shards=sorted(self.shards),
            batch_tenants=self.config.batch_tenants,
            max_offers_per_tenant=self.config.max_offers_per_tenant,
            offer_timeout_seconds=self.config.offer_timeout_seconds,
        )
        self.stats.rounds += 1
        self.stats.offers += result.offers
        self.stats.timed_out += result.timed_out
        if self.keep_latencies:
            self.stats.latencies_ms.extend(result.offer_latencies_ms)
        if self.metrics is not None and result.tenants:
            self.metrics.observe(result, time.perf_counter() - started, len(self.shards))
        return result

    async def _until_next_due(self, conn: asyncpg.Connection) -> float | None:
        """Seconds until the earliest due tenant of our shards (None: nothing scheduled)."""
        if not self.shards:
            return None
        nxt = await conn.fetchval(
            "SELECT min(due_at) FROM routing_work WHERE shard = ANY($1::smallint[])",
            sorted(self.shards),
        )
        if nxt is None:
            return None
        return max((nxt - datetime.now(UTC)).total_seconds(), 0.0)


# Deadlock, serialization failure, lock not available, statement cancelled.
TRANSIENT_SQLSTATES = frozenset({"40P01", "40001", "55P03", "57014"})
QUARANTINE_SECONDS = 30


def _sqlstate(exc: BaseException) -> str | None:
    state = getattr(exc, "sqlstate", None)
    return str(state) if state else None


async def _wait(event: asyncio.Event, seconds: float | None) -> None:
    """Until ``event`` is set or ``seconds`` pass. ``asyncio.timeout`` rather than
    ``wait_for``, whose cancellation in Python 3.11 can swallow a task's cancel and
    leave the worker hanging on SIGTERM."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()


async def serve(config: RouterConfig, metrics_port: int | None = None) -> None:
    """Run a worker until SIGTERM / SIGINT (then hand the shards back)."""
    import signal

    router = Router(config)
    if metrics_port is not None:
        router.metrics = RouterMetrics()
        router.metrics.serve(metrics_port)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, router.stop)
    log.info("router %s starting", router.id)
    await router.run()
