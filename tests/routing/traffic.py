"""Routing traffic for crash and lease tests: many tenants, fast.

- ``provision``: tenants with a skill, a chat queue, a routing profile and agents, written
  as SQL rows in one transaction per tenant (the REST API would take minutes for this).
- ``Traffic``: contacts enqueued through ``app.routing.contacts.enqueue``; agents who
  go available through ``app.routing.presence``, take their offers as soon as they are
  made (or now and then reject one) and complete them through
  ``app.routing.reservations`` - the same services the REST endpoints call, on the
  runtime role, with the tenant bound. Routing itself is left to the routing workers.
- ``Observer``: reads across all tenants as the routing workers' role with every shard
  named, so it works whatever role the test server's admin connection has; samples the
  invariants while the traffic runs and checks the end state.
- ``RouterProcess``: a real ``switchboard router`` OS process (killed with SIGKILL to
  simulate a crash).
- ``run_kill_scenario``: three routers, traffic, one router SIGKILLed mid-traffic; the
  figures the crash test asserts and ``loadtests/router_kill.py`` prints.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import sqlalchemy.exc
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.core.errors import SwitchboardError
from app.db.base import uuid7
from app.db.bootstrap import DatabaseUrls, asyncpg_kwargs
from app.db.engine import create_engine, make_session_factory
from app.db.tenant import TenantScope, bind_tenant, mint_scope
from app.routing import contacts, presence, reservations
from app.routing.schemas import ContactCreate, PresenceUpdate
from app.routing.shards import SHARD_COUNT, shard_of

LIVE = ("offered", "in_progress", "wrap_up")
CHAT_POINTS = 34  # the default channel cost of a chat (capacity 100: two chats at once)
ALL_SHARDS = ",".join(str(s) for s in range(SHARD_COUNT))
ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------- tenants


@dataclass
class TenantRig:
    id: uuid.UUID
    scope: TenantScope
    queue_id: uuid.UUID
    profile_id: uuid.UUID
    skill_id: uuid.UUID
    agent_ids: list[uuid.UUID]

    @property
    def shard(self) -> int:
        return shard_of(self.id)


def tenant_id_on_shard(shard: int) -> uuid.UUID:
    """A time-ordered tenant id that lands on ``shard`` (its last byte picks the shard)."""
    return uuid.UUID(int=(uuid7().int & ~0xFF) | (shard % SHARD_COUNT))


async def provision(
    admin: asyncpg.Connection,
    *,
    tenants: int,
    agents_per_tenant: int,
    shards: Sequence[int] | None = None,
    capacity_points: int = 100,
) -> list[TenantRig]:
    """Tenants (plan enterprise: no contact quota), each with one skill, one chat queue
    requiring it, one routing profile serving the queue and ``agents_per_tenant`` active
    agents holding the skill. ``shards``: where the tenants go (default: spread evenly)."""
    if shards is None:
        step = max(SHARD_COUNT // max(tenants, 1), 1)
        shards = [(i * step) % SHARD_COUNT for i in range(tenants)]
    now = datetime.now(UTC)
    rigs: list[TenantRig] = []
    for i in range(tenants):
        tid = tenant_id_on_shard(shards[i % len(shards)])
        rig = TenantRig(
            id=tid,
            scope=mint_scope(tid),
            queue_id=uuid7(),
            profile_id=uuid7(),
            skill_id=uuid7(),
            agent_ids=[uuid7() for _ in range(agents_per_tenant)],
        )
        async with admin.transaction():
            # Row-level security: an owner that is not a superuser writes as the tenant.
            await admin.execute("SELECT set_config('app.tenant_id', $1, true)", str(tid))
            await admin.execute(
                "INSERT INTO tenants (id, name, slug, status, plan, created_at, updated_at) "
                "VALUES ($1, $2, $3, 'active', 'enterprise', $4, $4)",
                tid,
                f"Load Co {i}",
                f"load-{tid.hex}",
                now,
            )
            await admin.execute(
                "INSERT INTO skills (version, created_at, updated_at, tenant_id, id, name, kind) "
                "VALUES (1, $1, $1, $2, $3, 'Billing', 'skill')",
                now,
                tid,
                rig.skill_id,
            )
            await admin.execute(
                """
                INSERT INTO queues (version, created_at, updated_at, tenant_id, id, name,
                    channels, service_level_percent, service_level_seconds, overflow_to_crowd,
                    relaxation_steps, agent_selection, sticky_timeout_seconds,
                    wrap_up_seconds, wrap_up_codes)
                VALUES (1, $1, $1, $2, $3, 'Support', ARRAY['chat'], 80, 20, false,
                        '[]'::jsonb, 'longest_idle', 0, 0, ARRAY[]::varchar[])
                """,
                now,
                tid,
                rig.queue_id,
            )
            await admin.execute(
                "INSERT INTO queue_skills (tenant_id, queue_id, skill_id, min_proficiency) "
                "VALUES ($1, $2, $3, 1)",
                tid,
                rig.queue_id,
                rig.skill_id,
            )
            await admin.execute(
                "INSERT INTO routing_profiles (version, created_at, updated_at, tenant_id, id, "
                "name, capacity_points, channel_costs) VALUES (1, $1, $1, $2, $3, 'Chat', $4, "
                "$5::jsonb)",
                now,
                tid,
                rig.profile_id,
                capacity_points,
                json.dumps({"voice": 100, "chat": CHAT_POINTS, "email": 20}),
            )
            await admin.execute(
                "INSERT INTO routing_profile_queues (tenant_id, routing_profile_id, queue_id, "
                "priority, delay_seconds) VALUES ($1, $2, $3, 1, 0)",
                tid,
                rig.profile_id,
                rig.queue_id,
            )
            await admin.executemany(
                "INSERT INTO users (tenant_id, id, email, role, status, created_at) "
                "VALUES ($1, $2, $3, 'agent', 'active', $4)",
                [(tid, a, f"agent-{a.hex}@example.com", now) for a in rig.agent_ids],
            )
            await admin.executemany(
                "INSERT INTO agents (version, created_at, updated_at, tenant_id, id, "
                "display_name, routing_profile_id, status) "
                "VALUES (1, $1, $1, $2, $3, $4, $5, 'active')",
                [(now, tid, a, f"Agent {n}", rig.profile_id) for n, a in enumerate(rig.agent_ids)],
            )
            await admin.executemany(
                "INSERT INTO agent_skills (tenant_id, agent_id, skill_id, proficiency) "
                "VALUES ($1, $2, $3, 3)",
                [(tid, a, rig.skill_id) for a in rig.agent_ids],
            )
        rigs.append(rig)
    return rigs


# ---------------------------------------------------------------------------- observer


class Observer:
    """Cross-tenant reads as the routing workers' role with all shards named."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, urls: DatabaseUrls) -> AsyncIterator[Observer]:
        conn = await asyncpg.connect(**asyncpg_kwargs(urls.router))
        try:
            await conn.execute("SELECT set_config('app.router_shards', $1, false)", ALL_SHARDS)
            yield cls(conn)
        finally:
            await conn.close()

    async def shards(self) -> list[asyncpg.Record]:
        """Every shard with its owner, whether its lease is live, and its epoch."""
        rows: list[asyncpg.Record] = await self.conn.fetch(
            "SELECT shard, owner, epoch, lease_expires_at, "
            "coalesce(lease_expires_at > now(), false) AS live "
            "FROM routing_shards ORDER BY shard"
        )
        return rows

    async def owners(self) -> dict[str, list[int]]:
        """Live lease holders and their shards."""
        out: dict[str, list[int]] = {}
        for r in await self.shards():
            if r["owner"] is not None and r["live"]:
                out.setdefault(r["owner"], []).append(r["shard"])
        return out

    async def open_offers(self) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self.conn.fetch(
            "SELECT tenant_id, id, agent_id, offer_expires_at FROM reservations "
            "WHERE state = 'offered'"
        )
        return rows

    async def contact_states(self) -> dict[str, int]:
        rows = await self.conn.fetch("SELECT state, count(*) AS n FROM contacts GROUP BY state")
        return {r["state"]: r["n"] for r in rows}

    async def invariant_breaches(self) -> list[dict[str, Any]]:
        """In one snapshot: agents whose used points differ from the points of their live
        reservations or pass their capacity, and contacts with two live reservations."""
        rows = await self.conn.fetch(
            """
            SELECT 'capacity' AS kind, p.tenant_id, p.agent_id AS id, p.used_points,
                   p.capacity_points, coalesce(sum(r.points), 0)::int AS live_points
              FROM agent_presence p
              LEFT JOIN reservations r
                ON r.tenant_id = p.tenant_id AND r.agent_id = p.agent_id
               AND r.state = ANY($1::text[])
             GROUP BY p.tenant_id, p.agent_id, p.used_points, p.capacity_points
            HAVING p.used_points > p.capacity_points
                OR p.used_points <> coalesce(sum(r.points), 0)
            UNION ALL
            SELECT 'double-offer', r.tenant_id, r.contact_id, NULL, NULL, count(*)::int
              FROM reservations r WHERE r.state = ANY($1::text[])
             GROUP BY r.tenant_id, r.contact_id HAVING count(*) > 1
            """,
            list(LIVE),
        )
        return [dict(r) for r in rows]


# ---------------------------------------------------------------------------- traffic


def _transient(exc: BaseException | None) -> bool:
    """A failure a client retries: the connection, the pool, a deadlock victim."""
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(
            exc,
            OSError
            | TimeoutError
            | asyncpg.InterfaceError
            | asyncpg.TooManyConnectionsError
            | asyncpg.CannotConnectNowError
            | asyncpg.DeadlockDetectedError
            | asyncpg.SerializationError
            | sqlalchemy.exc.TimeoutError
            | sqlalchemy.exc.InterfaceError
            | sqlalchemy.exc.OperationalError,
        ):
            return True
        exc = exc.__cause__
        seen += 1
    return False


@dataclass
class TrafficStats:
    enqueued: int = 0
    accepted: int = 0
    rejected: int = 0
    completed: int = 0
    let_expire: int = 0  # offers seen too late to act on safely (left to time out)
    late_answers: int = 0  # answered at the deadline on purpose (late_share)
    back_from_break: int = 0  # agents who went available again after missed offers
    conflicts: int = 0  # an offer that changed under the agent (rescinded)
    samples: int = 0
    errors: list[str] = field(default_factory=list)  # anything but a refusal (a bug)
    retries: list[str] = field(default_factory=list)  # lost connections, deadlocks
    breaches: list[dict[str, Any]] = field(default_factory=list)


class Traffic:
    """Contacts in, agents answering: all through the routing services.

    Agents act on an offer only while at least ``answer_margin_seconds`` of it are left,
    and let it time out otherwise: an accept or reject that commits just as the routing
    worker times the same offer out is a race of its own (``transitions.release_offers``
    gave the points back twice until it locked the agents first), not what the crash
    test is about. ``late_share`` of the offers are instead answered on purpose right
    at their expiry, to stress exactly that race (``loadtests/router_kill.py
    --late-share``). Agents put on break for missed offers go available again, as
    people would.
    """

    def __init__(
        self,
        urls: DatabaseUrls,
        rigs: Sequence[TenantRig],
        *,
        reject_share: float = 0.1,
        handle_seconds: tuple[float, float] = (0.0, 0.05),
        answer_margin_seconds: float = 2.0,
        late_share: float = 0.0,
        connections: int = 6,
        seed: int | None = None,
    ) -> None:
        self.urls = urls
        self.rigs = list(rigs)
        self.reject_share = reject_share
        self.handle_seconds = handle_seconds
        self.answer_margin = answer_margin_seconds
        self.late_share = late_share
        self.stats = TrafficStats()
        self.random = random.Random(seed)
        self._connections = connections
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        self._pool: asyncpg.Pool | None = None
        self._seen: set[uuid.UUID] = set()  # offers taken up (ids are never reused)
        self._offer_made = asyncio.Event()
        # Answering an offer comes before finishing work, so offers do not wait behind a
        # backlog of completions.
        self._answer_slots = asyncio.Semaphore(connections)
        self._finish_slots = asyncio.Semaphore(connections)

    async def __aenter__(self) -> Traffic:
        # The test server is shared: a small, fixed number of connections.
        self._engine = create_engine(
            self.urls.app, pool_size=self._connections, max_overflow=self._connections // 2
        )
        self._sessions = make_session_factory(self._engine)
        self._pool = await asyncpg.create_pool(
            **asyncpg_kwargs(self.urls.app), min_size=2, max_size=self._connections
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._pool is not None:
            await self._pool.close()
        if self._engine is not None:
            await self._engine.dispose()

    @contextlib.asynccontextmanager
    async def _tenant(self, rig: TenantRig) -> AsyncIterator[AsyncSession]:
        """One transaction bound to the tenant, as a request's would be."""
        assert self._sessions is not None
        async with self._sessions() as session, session.begin():
            await bind_tenant(session, rig.scope)
            yield session

    @contextlib.asynccontextmanager
    async def _tenant_conn(self, rig: TenantRig) -> AsyncIterator[asyncpg.Connection]:
        """The same on a bare connection (what ``raw(session)`` gives the endpoints)."""
        assert self._pool is not None
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT set_config('app.tenant_id', $1, true)", str(rig.id))
            yield conn

    async def go_available(self, grace_seconds: float = 600.0) -> None:
        for rig in self.rigs:
            async with self._tenant_conn(rig) as conn:
                for agent_id in rig.agent_ids:
                    await self._available(conn, rig, agent_id, grace_seconds)

    async def _available(
        self, conn: asyncpg.Connection, rig: TenantRig, agent_id: uuid.UUID, grace: float = 600.0
    ) -> None:
        await presence.set_status_on(
            conn, rig.scope, agent_id, PresenceUpdate(status="available"), grace_seconds=grace
        )

    async def enqueue(self, rig: TenantRig, n: int = 1) -> list[uuid.UUID]:
        ids = []
        async with self._tenant(rig) as session:
            for _ in range(n):
                ids.append(
                    await contacts.enqueue(
                        session,
                        rig.scope,
                        "enterprise",
                        ContactCreate(
                            channel="chat",
                            queue_id=rig.queue_id,
                            customer_ref=f"cust-{uuid.uuid4().hex[:8]}",
                        ),
                    )
                )
        self.stats.enqueued += n
        return ids

    async def enqueue_many(self, total: int, *, batch: int = 10, parallel: int = 3) -> None:
        """``total`` contacts, round-robin over the tenants, ``batch`` per transaction."""
        jobs: asyncio.Queue[tuple[TenantRig, int]] = asyncio.Queue()
        left, i = total, 0
        while left > 0:
            n = min(batch, left)
            jobs.put_nowait((self.rigs[i % len(self.rigs)], n))
            left -= n
            i += 1

        async def feeder() -> None:
            while not jobs.empty():
                rig, n = jobs.get_nowait()
                await self.enqueue(rig, n)

        await asyncio.gather(*(feeder() for _ in range(parallel)))

    # -- agents

    def _on_outbox(self, *_: object) -> None:
        self._offer_made.set()

    async def answer_offers(self, observer: Observer, stop: asyncio.Event) -> None:
        """Agents take each new offer at once (LISTEN sb_outbox wakes them; a short poll
        covers the rest): accept, handle briefly, complete; or reject now and then."""
        await observer.conn.add_listener("sb_outbox", self._on_outbox)
        rigs = {r.id: r for r in self.rigs}
        tasks: set[asyncio.Task[None]] = set()
        try:
            while not stop.is_set():
                self._offer_made.clear()
                for o in await observer.open_offers():
                    if o["id"] in self._seen:
                        continue
                    self._seen.add(o["id"])
                    t = asyncio.create_task(
                        self._answer(
                            rigs[o["tenant_id"]], o["id"], o["agent_id"], o["offer_expires_at"]
                        )
                    )
                    tasks.add(t)
                    t.add_done_callback(tasks.discard)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._offer_made.wait(), timeout=0.1)
                # Every outbox event wakes us: gather a few before looking again.
                await asyncio.sleep(0.01)
        finally:
            await observer.conn.remove_listener("sb_outbox", self._on_outbox)
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _answer(
        self, rig: TenantRig, reservation_id: uuid.UUID, agent_id: uuid.UUID, expires: datetime
    ) -> None:
        margin = self.answer_margin
        if self.random.random() < self.late_share:
            # Right at the deadline: the agent's answer and the worker's time-out race.
            left = (expires - datetime.now(UTC)).total_seconds()
            await asyncio.sleep(max(left + self.random.uniform(-0.15, 0.05), 0))
            margin = float("-inf")
            self.stats.late_answers += 1
        if self.random.random() < self.reject_share:
            outcome = await self._retrying(
                rig,
                reservation_id,
                "reject",
                lambda c: reservations.reject(c, rig.scope, reservation_id, agent_id),
                expires=expires,
                margin=margin,
            )
            if outcome == "done":
                self.stats.rejected += 1
            return
        outcome = await self._retrying(
            rig,
            reservation_id,
            "accept",
            lambda c: reservations.accept(c, rig.scope, reservation_id, agent_id),
            expires=expires,
            margin=margin,
        )
        if outcome != "done":
            return
        self.stats.accepted += 1
        await asyncio.sleep(self.random.uniform(*self.handle_seconds))
        outcome = await self._retrying(
            rig,
            reservation_id,
            "complete",
            lambda session: reservations.complete(session, rig.scope, reservation_id, agent_id),
        )
        if outcome == "done":
            self.stats.completed += 1

    async def _retrying(
        self,
        rig: TenantRig,
        reservation_id: uuid.UUID,
        step: str,
        act: Any,
        expires: datetime | None = None,
        margin: float = 0.0,
    ) -> str:
        """One agent action, retried as a client would after a lost connection or a
        deadlock (the transaction rolled back). A refusal ends it ("conflict"), unless it
        says the action took effect before the connection was lost."""
        for attempt in range(6):
            try:
                if expires is None:  # complete: the usage ledger goes through the session
                    async with self._finish_slots, self._tenant(rig) as tx:
                        await act(tx)
                    return "done"
                async with self._answer_slots, self._tenant_conn(rig) as conn:
                    left = (expires - datetime.now(UTC)).total_seconds()
                    if left < margin:
                        self.stats.let_expire += 1
                        return "late"
                    await act(conn)
                return "done"
            except SwitchboardError:
                if attempt and await self._took_effect(rig, reservation_id, step):
                    return "done"
                self.stats.conflicts += 1
                return "conflict"
            except Exception as exc:
                if not _transient(exc) or attempt == 5:
                    self.stats.errors.append(f"{step} {reservation_id}: {exc!r}")
                    return "error"
                self.stats.retries.append(f"{step}: {type(exc).__name__}")
                await asyncio.sleep(0.1 * (attempt + 1))
        return "error"

    async def _took_effect(self, rig: TenantRig, reservation_id: uuid.UUID, step: str) -> bool:
        async with self._tenant_conn(rig) as conn:
            state = await conn.fetchval(
                "SELECT state FROM reservations WHERE tenant_id = $1 AND id = $2",
                rig.id,
                reservation_id,
            )
        wanted = {"accept": ("in_progress",), "reject": ("rejected",), "complete": ("completed",)}
        return state in wanted[step]

    async def sample(self, observer: Observer, stop: asyncio.Event, every: float = 0.1) -> None:
        """Check the invariants in one snapshot, over and over, while traffic runs; and
        bring agents back from a missed-offers break."""
        rigs = {r.id: r for r in self.rigs}
        while not stop.is_set():
            self.stats.breaches += await observer.invariant_breaches()
            self.stats.samples += 1
            for row in await observer.conn.fetch(
                "SELECT tenant_id, agent_id FROM agent_presence "
                "WHERE status = 'break' AND break_reason = 'missed-offers'"
            ):
                rig = rigs[row["tenant_id"]]
                with contextlib.suppress(SwitchboardError):
                    async with self._tenant_conn(rig) as conn:
                        await self._available(conn, rig, row["agent_id"])
                    self.stats.back_from_break += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every)


# ---------------------------------------------------------------------------- final checks


async def overlapping_offers(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """Pairs of reservations of one contact whose [offered_at, closed_at] overlap (an open
    reservation runs to infinity)."""
    rows = await conn.fetch(
        """
        SELECT a.tenant_id, a.contact_id, a.id AS first, b.id AS second,
               a.offered_at AS first_offered, a.closed_at AS first_closed,
               b.offered_at AS second_offered
          FROM reservations a
          JOIN reservations b
            ON b.tenant_id = a.tenant_id AND b.contact_id = a.contact_id
           AND (a.offered_at, a.id) < (b.offered_at, b.id)
         WHERE b.offered_at < coalesce(a.closed_at, 'infinity')
        """
    )
    return [dict(r) for r in rows]


async def live_index_exists(conn: asyncpg.Connection) -> bool:
    """The partial unique index that allows one live reservation per contact."""
    definition = await conn.fetchval(
        "SELECT indexdef FROM pg_indexes WHERE indexname = 'ux_reservations_live_contact'"
    )
    return bool(
        definition
        and "UNIQUE" in definition
        and "contact_id" in definition
        and all(s in definition for s in LIVE)
    )


async def reset_database(admin: asyncpg.Connection) -> None:
    """Empty every table and free the shard leases (between runs outside pytest; the
    test harness does the same after each test)."""
    is_super = await admin.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    tables = [
        r["tablename"]
        for r in await admin.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename NOT IN ('alembic_version', 'routing_shards')"
        )
    ]
    async with admin.transaction():
        if is_super:
            # Faster than TRUNCATE for small tables; replica mode skips the triggers that
            # keep ledgers append-only.
            await admin.execute("SET LOCAL session_replication_role = replica")
            for t in tables:
                await admin.execute(f'DELETE FROM "{t}"')
        elif tables:
            await admin.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " CASCADE")
        await admin.execute(
            "UPDATE routing_shards SET owner = NULL, lease_expires_at = NULL, epoch = 0"
        )


# ---------------------------------------------------------------------------- processes


class RouterProcess:
    """``switchboard router`` as an OS process against the given database."""

    def __init__(
        self,
        urls: DatabaseUrls,
        log_dir: Path,
        *,
        lease_seconds: float = 2.0,
        offer_timeout_seconds: float = 5.0,
        name: str = "router",
    ) -> None:
        self.log_path = log_dir / f"{name}-{uuid.uuid4().hex[:6]}.log"
        exe = Path(sys.executable).with_name("switchboard")
        env = dict(os.environ)
        env.update(
            SWITCHBOARD_DATABASE_URL=urls.admin,
            SWITCHBOARD_APP_DATABASE_URL=urls.app,
            SWITCHBOARD_ROUTER_DATABASE_URL=urls.router,
        )
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(  # noqa: S603 - our own CLI
            [
                str(exe),
                "router",
                "--lease-seconds",
                str(lease_seconds),
                "--offer-timeout-seconds",
                str(offer_timeout_seconds),
            ],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def owns(self, owner: str | None) -> bool:
        """Worker ids are host:pid:random."""
        return owner is not None and owner.split(":")[-2:-1] == [str(self.pid)]

    def kill(self) -> None:
        """A crash: no clean leave, the leases stay until they expire."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


@contextlib.contextmanager
def routers(urls: DatabaseUrls, log_dir: Path, count: int, **kw: Any) -> Any:
    procs = [RouterProcess(urls, log_dir, name=f"router{i}", **kw) for i in range(count)]
    try:
        yield procs
    finally:
        for p in procs:
            p.stop()


async def wait_until(predicate: Any, within: float, interval: float = 0.05, what: str = "") -> Any:
    """Await ``predicate()`` until truthy; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(interval)


def balanced(owners: dict[str, list[int]], procs: Sequence[RouterProcess]) -> bool:
    """Every shard leased, by exactly these processes, none over its fair share."""
    fair = -(-SHARD_COUNT // len(procs))
    held = sum(len(s) for s in owners.values())
    return (
        held == SHARD_COUNT
        and len(owners) == len(procs)
        and all(any(p.owns(o) for p in procs) for o in owners)
        and all(len(s) <= fair for s in owners.values())
    )


# ---------------------------------------------------------------------------- scenario


@dataclass
class KillFigures:
    contacts: int = 0
    completed: int = 0
    offers: int = 0
    reoffers: int = 0  # offers of a contact after its first (rejections, time-outs)
    rejected: int = 0
    conflicts: int = 0
    timed_out: int = 0
    let_expire: int = 0
    late_answers: int = 0
    back_from_break: int = 0
    errors: list[str] = field(default_factory=list)
    retries: int = 0
    samples: int = 0
    double_offers: int = 0
    capacity_violations: int = 0
    takeover_seconds: float = 0.0
    early_takeovers: int = 0
    takeover_bound_seconds: float = 0.0
    dead_shards: int = 0
    dead_shard_contacts_after_kill: int = 0
    offers_by_victim: int = 0
    epochs_increased: bool = False
    drain_seconds: float = 0.0
    run_seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


@dataclass
class Kill:
    victim: RouterProcess
    victim_id: str
    leases: dict[int, asyncpg.Record]  # its shards as it left them
    at: float  # monotonic
    wall: datetime

    @property
    def shards(self) -> list[int]:
        return sorted(self.leases)


async def run_kill_scenario(
    urls: DatabaseUrls,
    admin: asyncpg.Connection,
    log_dir: Path,
    *,
    tenants: int = 30,
    agents_per_tenant: int = 4,
    contacts_total: int = 2000,
    lease_seconds: float = 2.0,
    offer_timeout_seconds: float = 5.0,
    kill_after_share: float = 0.4,
    drain_timeout: float = 90.0,
    late_share: float = 0.0,
) -> KillFigures:
    """Three routers, traffic, one SIGKILLed mid-traffic, traffic on until it drains."""
    started = time.monotonic()
    fig = KillFigures(takeover_bound_seconds=lease_seconds + lease_seconds / 3)
    rigs = await provision(admin, tenants=tenants, agents_per_tenant=agents_per_tenant)
    with routers(
        urls, log_dir, 3, lease_seconds=lease_seconds, offer_timeout_seconds=offer_timeout_seconds
    ) as procs:
        async with (
            Observer.connect(urls) as watch,
            Observer.connect(urls) as sampler,
            Observer.connect(urls) as offers,
            Traffic(urls, rigs, late_share=late_share) as traffic,
        ):
            try:
                await wait_until(
                    lambda: _balanced_now(watch, procs), within=30, what="three routers share"
                )
            except AssertionError:
                raise AssertionError(
                    "routers did not start:\n" + "\n---\n".join(p.log_tail() for p in procs)
                ) from None
            await traffic.go_available()
            stop = asyncio.Event()
            tasks = [
                asyncio.create_task(traffic.enqueue_many(contacts_total)),
                asyncio.create_task(traffic.answer_offers(offers, stop)),
                asyncio.create_task(traffic.sample(sampler, stop)),
            ]
            try:
                await wait_until(
                    lambda: _async(
                        traffic.stats.enqueued >= contacts_total * kill_after_share
                        and traffic.stats.completed >= contacts_total * kill_after_share / 4
                    ),
                    within=60,
                    what="traffic under way",
                )
                kill = await _kill_busiest(watch, procs, traffic, fig, started)
                await _measure_takeover(watch, procs, kill, lease_seconds, fig)
                await tasks[0]  # every contact is in
                fig.details["enqueue_done_seconds"] = round(time.monotonic() - started, 3)
                drain_start = time.monotonic()
                try:
                    await wait_until(
                        lambda: _drained(watch, traffic),
                        within=drain_timeout,
                        interval=0.1,
                        what="all contacts completed",
                    )
                except AssertionError:
                    raise AssertionError(
                        f"not drained in {drain_timeout} s: {await watch.contact_states()}; "
                        f"errors {traffic.stats.errors[:5]}; retries {traffic.stats.retries[:5]}"
                        "\n" + "\n---\n".join(p.log_tail() for p in procs)
                    ) from None
                fig.drain_seconds = round(time.monotonic() - drain_start, 3)
            finally:
                stop.set()
                for t in tasks:
                    if not t.done():
                        t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            for t in tasks:
                if not t.cancelled() and t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
            await _end_state(watch, traffic, kill, fig)
    fig.run_seconds = round(time.monotonic() - started, 3)
    return fig


async def _kill_busiest(
    watch: Observer,
    procs: Sequence[RouterProcess],
    traffic: Traffic,
    fig: KillFigures,
    started: float,
) -> Kill:
    """SIGKILL the router holding the most shards, and note what it left behind."""
    owners = await watch.owners()
    victim = max(procs, key=lambda p: _held(owners, p))
    victim_id = next(o for o in owners if victim.owns(o))
    at, wall = time.monotonic(), datetime.now(UTC)
    victim.kill()
    # Its last leases, as it left them: it cannot renew them any more.
    leases = {r["shard"]: r for r in await watch.shards() if r["owner"] == victim_id}
    kill = Kill(victim=victim, victim_id=victim_id, leases=leases, at=at, wall=wall)
    fig.dead_shards = len(leases)
    fig.details["killed_at_seconds"] = round(at - started, 3)
    fig.details["enqueued_at_kill"] = traffic.stats.enqueued
    fig.details["completed_at_kill"] = traffic.stats.completed
    fig.offers_by_victim = await watch.conn.fetchval(
        "SELECT count(*) FROM reservations WHERE shard = ANY($1::smallint[])", kill.shards
    )
    fig.details["waiting_in_dead_shards_at_kill"] = await watch.conn.fetchval(
        "SELECT count(*) FROM contacts WHERE shard = ANY($1::smallint[]) AND state <> 'completed'",
        kill.shards,
    )
    return kill


async def _measure_takeover(
    watch: Observer,
    procs: Sequence[RouterProcess],
    kill: Kill,
    lease_seconds: float,
    fig: KillFigures,
) -> None:
    """Poll the shard table until live survivors hold every dead shard: how long it took,
    whether any was taken before the dead lease ran out, and the epochs."""
    survivors = [p for p in procs if p is not kill.victim]
    first_seen: dict[int, asyncpg.Record] = {}

    async def taken_over() -> bool:
        rows = {r["shard"]: r for r in await watch.shards()}
        for s in kill.leases:
            if rows[s]["owner"] != kill.victim_id and s not in first_seen:
                first_seen[s] = rows[s]
        return all(
            rows[s]["live"] and any(p.owns(rows[s]["owner"]) for p in survivors)
            for s in kill.leases
        )

    await wait_until(taken_over, within=lease_seconds * 10, interval=0.02, what="takeover")
    fig.takeover_seconds = round(time.monotonic() - kill.at, 3)
    # A new lease starts (its expiry minus the lease time) at or after the old one's end.
    fig.early_takeovers = sum(
        1
        for s, r in first_seen.items()
        if r["owner"] is not None
        and (r["lease_expires_at"] - kill.leases[s]["lease_expires_at"]).total_seconds()
        < lease_seconds - 0.001
    )
    after = {r["shard"]: r["epoch"] for r in await watch.shards()}
    fig.epochs_increased = all(after[s] > r["epoch"] for s, r in kill.leases.items())


async def _end_state(watch: Observer, traffic: Traffic, kill: Kill, fig: KillFigures) -> None:
    """The figures once the traffic has drained."""
    q = watch.conn
    stats = traffic.stats
    states = await watch.contact_states()
    fig.contacts = stats.enqueued
    fig.completed = states.get("completed", 0)
    fig.details["states"] = states
    fig.offers = await q.fetchval("SELECT count(*) FROM reservations")
    fig.reoffers = fig.offers - await q.fetchval(
        "SELECT count(DISTINCT (tenant_id, contact_id)) FROM reservations"
    )
    fig.timed_out = await q.fetchval("SELECT count(*) FROM reservations WHERE state = 'timed_out'")
    fig.rejected = stats.rejected
    fig.conflicts = stats.conflicts
    fig.let_expire = stats.let_expire
    fig.late_answers = stats.late_answers
    fig.back_from_break = stats.back_from_break
    fig.errors = stats.errors[:10]
    fig.retries = len(stats.retries)
    fig.details["retried"] = sorted(set(stats.retries))
    fig.samples = stats.samples
    breaches = stats.breaches + await watch.invariant_breaches()
    fig.capacity_violations = sum(1 for b in breaches if b["kind"] == "capacity")
    overlaps = await overlapping_offers(q)
    fig.double_offers = len(overlaps) + sum(1 for b in breaches if b["kind"] == "double-offer")
    fig.details["overlaps"] = [_plain(o) for o in overlaps[:5]]
    fig.details["breaches"] = [_plain(b) for b in breaches[:5]]
    fig.details["live_index"] = await live_index_exists(q)
    fig.details["completed_per_contact_ok"] = await q.fetchval(
        """
        SELECT bool_and(n = 1) FROM (
          SELECT count(*) FILTER (WHERE r.state = 'completed') AS n
            FROM contacts c LEFT JOIN reservations r
              ON r.tenant_id = c.tenant_id AND r.contact_id = c.id
           GROUP BY c.tenant_id, c.id) x
        """
    )
    fig.dead_shard_contacts_after_kill = await q.fetchval(
        "SELECT count(*) FROM contacts WHERE shard = ANY($1::smallint[]) "
        "AND enqueued_at > $2 AND state = 'completed'",
        kill.shards,
        kill.wall,
    )
    fig.details["victim_log"] = kill.victim.log_tail(5)


async def _async(value: bool) -> bool:
    return value


def _held(owners: dict[str, list[int]], proc: RouterProcess) -> int:
    return sum(len(s) for o, s in owners.items() if proc.owns(o))


async def _balanced_now(watch: Observer, procs: Sequence[RouterProcess]) -> bool:
    for p in procs:
        if p.proc.poll() is not None:
            raise AssertionError(f"router exited ({p.proc.returncode}):\n{p.log_tail()}")
    return balanced(await watch.owners(), procs)


async def _drained(watch: Observer, traffic: Traffic) -> bool:
    states = await watch.contact_states()
    return states.get("completed", 0) == traffic.stats.enqueued and sum(states.values()) == (
        traffic.stats.enqueued
    )


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, uuid.UUID | datetime) else v) for k, v in row.items()}
