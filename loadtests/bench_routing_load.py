"""The routing benchmark's load: contacts arriving at a steady rate, and agents who
accept every offer at once and finish the work after a short handle time.

Each runs in its own process (``multiprocessing``, spawn), driven over a pipe by the
benchmark: ``rate`` / ``pause`` / ``stats`` / ``stop``.

- Generator: open loop. Contacts are due at ``rate`` per second whatever happened to
  the previous ones; each is one transaction as the runtime role, bound to its tenant,
  running the SQL of ``app.routing.contacts.enqueue`` for a queue given by id (queue
  lookup, the plan's ``concurrent_contacts`` quota check with its advisory lock, the
  INSERT, the decision-trail row and ``touch_work`` with its NOTIFY): the statements
  are the service's, issued through asyncpg instead of a SQLAlchemy session, without the
  HTTP layer (authentication, idempotency keys).
- Acceptor: stands in for the agent desktops. It LISTENs on ``sb_outbox`` like the
  API's OutboxHub, but reads the announced events in batches as the superuser (the hub
  reads one event per agent connection, bound to the tenant) and keeps
  ``offer.created``. Each offer is accepted at once with
  ``app.routing.reservations.accept`` (the service function itself, as the runtime role
  bound to the tenant); after ``handle_seconds`` the work is completed with the SQL of
  ``reservations.complete`` (usage ledger row, wrap-up, then ``finish_wrap_ups``: the
  queues have no wrap-up time), which frees the agent's points and wakes the router.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from multiprocessing.connection import Connection
from typing import Any

import asyncpg

ACTIVE = ["queued", "offered", "in_progress", "wrap_up"]
QUOTA_LIMIT = 1000  # the growth plan's concurrent_contacts


def _kw(url: str) -> dict[str, Any]:
    from app.db.bootstrap import asyncpg_kwargs

    return asyncpg_kwargs(url)


class Commands:
    """The benchmark's commands, read from the pipe inside the event loop."""

    def __init__(self, pipe: Connection) -> None:
        self.pipe = pipe
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        asyncio.get_running_loop().add_reader(pipe.fileno(), self._readable)

    def _readable(self) -> None:
        while self.pipe.poll():
            try:
                self.queue.put_nowait(self.pipe.recv())
            except EOFError:
                self.queue.put_nowait({"cmd": "stop"})
                asyncio.get_running_loop().remove_reader(self.pipe.fileno())
                return

    def reply(self, value: Any) -> None:
        self.pipe.send(value)


async def _no_reset(_conn: asyncpg.Connection) -> None:
    """Our transactions set only transaction-local settings: skip the pool's reset query
    (one more round trip per use)."""


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


# ------------------------------------------------------------------------ generator


async def enqueue(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, queue_id: uuid.UUID, n: int
) -> None:
    """contacts.enqueue's statements for a direct queue, live mode, no extra skills."""
    from app.db.base import utcnow, uuid7
    from app.routing.shards import shard_of
    from app.routing.transitions import dumps, touch_work, trail

    async with conn.transaction():
        await conn.execute("SELECT set_config('app.tenant_id', $1, true)", str(tenant_id))
        queue = await conn.fetchrow(
            "SELECT id, channels, max_waiting, overflow_queue_id, sticky_timeout_seconds "
            "FROM queues WHERE tenant_id = $1 AND id = $2",
            tenant_id,
            queue_id,
        )
        assert queue is not None and "chat" in queue["channels"]
        # app.quotas.service.ensure_room for concurrent_contacts on the growth plan.
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            f"quota:{tenant_id}:concurrent_contacts",
        )
        used = await conn.fetchval(
            "SELECT count(*) FROM contacts WHERE tenant_id = $1 AND state = ANY($2::text[])",
            tenant_id,
            ACTIVE,
        )
        if used + 1 > QUOTA_LIMIT:
            raise RuntimeError("quota-exceeded")
        now = utcnow()
        cid = uuid7()
        shard = shard_of(tenant_id)
        await conn.execute(
            """
            INSERT INTO contacts (tenant_id, id, shard, channel, queue_id, original_queue_id,
                customer_ref, priority, state, mode, extra_skills, attributes,
                preferred_agent_ids, sticky_agent_id, enqueued_at, queue_entered_at,
                missed_offers, version, created_at, updated_at)
            VALUES ($1, $2, $3, $4, $5, $5, $6, $7, 'queued', $8, $9::jsonb, $10::jsonb,
                    $11::uuid[], $12, $13, $13, 0, 1, $13, $13)
            """,
            tenant_id,
            cid,
            shard,
            "chat",
            queue["id"],
            f"customer-{n}",
            5,
            "live",
            dumps([]),
            dumps({}),
            [],
            None,
            now,
        )
        detail = {"queue_id": str(queue["id"]), "priority": 5}
        await trail(conn, [(tenant_id, shard, cid, None, "enqueued", now, detail)])
        await touch_work(conn, tenant_id, shard, now)


def lean_enqueue_sql(tenant_id: uuid.UUID, queue_id: uuid.UUID, n: int) -> str:
    """The rows and notification of ``enqueue`` in one round trip: one transaction in
    the simple query protocol (literals are our own UUIDs, numbers and a timestamp)."""
    from app.db.base import utcnow, uuid7
    from app.routing.shards import shard_of

    t, q, cid, eid = tenant_id, queue_id, uuid7(), uuid7()
    shard = shard_of(tenant_id)
    now = utcnow().isoformat()
    detail = f'{{"queue_id": "{q}", "priority": 5}}'
    # Literals: our own UUIDs, integers and a timestamp.
    return f"""
BEGIN;
SELECT set_config('app.tenant_id', '{t}', true);
WITH c AS (
  INSERT INTO contacts (tenant_id, id, shard, channel, queue_id, original_queue_id,
      customer_ref, priority, state, mode, extra_skills, attributes, preferred_agent_ids,
      enqueued_at, queue_entered_at, missed_offers, version, created_at, updated_at)
  VALUES ('{t}', '{cid}', {shard}, 'chat', '{q}', '{q}', 'customer-{int(n)}', 5, 'queued',
          'live', '[]', '{{}}', '{{}}', '{now}', '{now}', 0, 1, '{now}', '{now}')
  RETURNING tenant_id, id, shard, enqueued_at
), e AS (
  INSERT INTO routing_events (tenant_id, id, shard, contact_id, agent_id, kind, at, detail)
  SELECT tenant_id, '{eid}', shard, id, NULL, 'enqueued', enqueued_at, '{detail}' FROM c
), w AS (
  INSERT INTO routing_work AS w (tenant_id, shard, due_at, seq)
  SELECT tenant_id, shard, enqueued_at, 1 FROM c
  ON CONFLICT (tenant_id) DO UPDATE
     SET due_at = LEAST(w.due_at, EXCLUDED.due_at), seq = w.seq + 1
)
SELECT pg_notify('sb_routing', '{shard}');
COMMIT;
"""  # noqa: S608


async def run_generator(cfg: dict[str, Any], pipe: Connection) -> None:
    import random

    commands = Commands(pipe)
    tenants = [(uuid.UUID(t), uuid.UUID(q)) for t, q in cfg["tenants"]]
    rng = random.Random(cfg["seed"])
    pool = await asyncpg.create_pool(
        **_kw(cfg["app_url"]),
        min_size=cfg["connections"],
        max_size=cfg["connections"],
        reset=_no_reset,
    )
    assert pool is not None
    counts = {"sent": 0, "done": 0, "failed": 0, "late": 0}
    busy = {"seconds": 0.0}  # summed enqueue transaction time (client side)
    errors: dict[str, int] = {}
    inflight: set[asyncio.Task[None]] = set()
    max_inflight = cfg["max_inflight"]
    lean = cfg["enqueue"] == "lean"
    rate = 0.0
    n = 0

    async def one(t: uuid.UUID, q: uuid.UUID, k: int) -> None:
        try:
            async with pool.acquire() as conn:
                began = time.perf_counter()
                if lean:
                    await conn.execute(lean_enqueue_sql(t, q, k))
                else:
                    await enqueue(conn, t, q, k)
                busy["seconds"] += time.perf_counter() - began
            counts["done"] += 1
        except Exception as exc:
            counts["failed"] += 1
            key = type(exc).__name__ + ": " + (str(exc).splitlines() or [""])[0][:80]
            errors[key] = errors.get(key, 0) + 1

    tick = 0.002
    started = time.perf_counter()
    owed = 0.0
    last = started
    stop = False
    while not stop:
        while not commands.queue.empty():
            c = commands.queue.get_nowait()
            if c["cmd"] == "rate":
                rate = float(c["value"])
                owed = 0.0
            elif c["cmd"] == "stats":
                commands.reply(
                    {
                        **counts,
                        **busy,
                        "inflight": len(inflight),
                        "cpu": _cpu(),
                        "errors": dict(errors),
                    }
                )
                errors.clear()  # per reply: each window reports its own
            elif c["cmd"] == "stop":
                stop = True
        now = time.perf_counter()
        owed += rate * (now - last)
        last = now
        while owed >= 1.0:
            owed -= 1.0
            if len(inflight) >= max_inflight:
                counts["late"] += 1  # the client cannot keep up: counted, not sent
                continue
            t, q = tenants[rng.randrange(len(tenants))]
            n += 1
            counts["sent"] += 1
            task = asyncio.create_task(one(t, q, n))
            inflight.add(task)
            task.add_done_callback(inflight.discard)
        await asyncio.sleep(tick)
    for task in list(inflight):
        with contextlib.suppress(Exception):
            await task
    await pool.close()
    commands.reply({"stopped": True})


# ------------------------------------------------------------------------- acceptor


async def complete(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, reservation_id: uuid.UUID, agent_id: uuid.UUID
) -> None:
    """reservations.complete's statements (queue without wrap-up time)."""
    from app.db.base import utcnow, uuid7
    from app.routing.transitions import dumps, emit, finish_wrap_ups

    now = utcnow()
    row = await conn.fetchrow(
        "SELECT * FROM reservations WHERE tenant_id = $1 AND id = $2", tenant_id, reservation_id
    )
    if row is None or row["agent_id"] != agent_id or row["state"] != "in_progress":
        raise RuntimeError("reservation-not-in-progress")
    wrap = await conn.fetchval(
        "SELECT wrap_up_seconds FROM queues WHERE tenant_id = $1 AND id = $2",
        tenant_id,
        row["queue_id"],
    )
    minutes = Decimal(str(round((now - row["accepted_at"]).total_seconds() / 60.0, 4)))
    key = f"reservation:{reservation_id}:handled"
    await conn.fetchval(
        """
        INSERT INTO usage_events (tenant_id, id, meter, quantity, occurred_at, recorded_at,
                                  idempotency_key, attributes)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)
        ON CONFLICT (tenant_id, idempotency_key) DO NOTHING RETURNING id
        """,
        tenant_id,
        uuid7(),
        f"handled_minutes.{row['channel']}",
        minutes,
        now,
        utcnow(),
        key,
        dumps({"contact_id": str(row["contact_id"]), "queue_id": str(row["queue_id"])}),
    )
    await conn.fetchrow(
        "SELECT * FROM usage_events WHERE tenant_id = $1 AND idempotency_key = $2", tenant_id, key
    )
    await conn.execute(
        "UPDATE contacts SET state = 'wrap_up', wrap_up_at = $3, version = version + 1, "
        "updated_at = $3 WHERE tenant_id = $1 AND id = $2 AND state = 'in_progress'",
        tenant_id,
        row["contact_id"],
        now,
    )
    await conn.execute(
        "UPDATE reservations SET state = 'wrap_up', wrap_up_at = $3, wrap_up_expires_at = $4 "
        "WHERE tenant_id = $1 AND id = $2",
        tenant_id,
        reservation_id,
        now,
        now + timedelta(seconds=wrap or 0),
    )
    await emit(
        conn,
        [
            (
                tenant_id,
                row["shard"],
                agent_id,
                "work.wrap_up",
                {
                    "reservation_id": str(reservation_id),
                    "contact_id": str(row["contact_id"]),
                    "wrap_up_seconds": wrap or 0,
                },
            )
        ],
    )
    assert not wrap, "the benchmark's queues have no wrap-up time"
    await finish_wrap_ups(conn, now=now, reason="no-wrap-up", reservation_ids=[reservation_id])
    await conn.fetchrow(
        "SELECT * FROM reservations WHERE tenant_id = $1 AND id = $2", tenant_id, reservation_id
    )


async def run_acceptor(cfg: dict[str, Any], pipe: Connection) -> None:
    from app.core.errors import SwitchboardError
    from app.db.tenant import mint_scope
    from app.routing import reservations
    from app.routing.transitions import OUTBOX_CHANNEL

    commands = Commands(pipe)
    index, parts = cfg["index"], cfg["parts"]
    handle = float(cfg["handle_seconds"])
    pool = await asyncpg.create_pool(
        **_kw(cfg["app_url"]),
        min_size=cfg["connections"],
        max_size=cfg["connections"],
        reset=_no_reset,
    )
    assert pool is not None
    own: set[int] = set()
    held = [await pool.acquire() for _ in range(cfg["connections"])]
    for c in held:
        own.add(c.get_server_pid())
    for c in held:
        await pool.release(c)
    reader = await asyncpg.connect(**_kw(cfg["admin_url"]))
    listener = await asyncpg.connect(**_kw(cfg["admin_url"]))

    counts = {
        "notified": 0,
        "offers": 0,
        "accepted": 0,
        "conflicts": 0,
        "completed": 0,
        "failed": 0,
        "deadlocks": 0,
    }
    batched = cfg["complete"] == "batch"
    errors: dict[str, int] = {}
    # (enqueued_at epoch, enqueue -> offer received ms, enqueue -> accepted ms)
    latencies: list[tuple[float, float, float]] = []
    pending: list[tuple[str, int, float]] = []
    wake = asyncio.Event()
    paused = False
    tasks: set[asyncio.Task[None]] = set()

    def spawn(coro: Any) -> None:
        task = asyncio.create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def on_notify(_c: object, pid: int, _ch: str, payload: str) -> None:
        if pid in own:
            return  # our own accept/complete events
        tenant, _, rest = payload.partition(":")
        _agent, _, event_id = rest.partition(":")
        if parts > 1 and int(tenant[-4:], 16) % parts != index:
            return
        counts["notified"] += 1
        pending.append((tenant, int(event_id), time.time()))
        wake.set()

    def failed(exc: Exception) -> None:
        counts["failed"] += 1
        key = type(exc).__name__ + ": " + (str(exc).splitlines() or [""])[0][:80]
        errors[key] = errors.get(key, 0) + 1

    async def finish(tenant_id: uuid.UUID, rid: uuid.UUID, agent_id: uuid.UUID) -> None:
        """One agent's ``complete``, as the service runs it (``--complete service``)."""
        try:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT set_config('app.tenant_id', $1, true)", str(tenant_id))
                await complete(conn, tenant_id, rid, agent_id)
            counts["completed"] += 1
        except Exception as exc:
            failed(exc)

    # (due, tenant, reservation, agent, contact), in due order: the handle time is fixed.
    finishing: collections.deque[tuple[float, uuid.UUID, uuid.UUID, uuid.UUID, uuid.UUID]]
    finishing = collections.deque()

    async def finish_tenant(tenant_id: uuid.UUID, items: list[tuple[uuid.UUID, uuid.UUID]]) -> None:
        """A tenant's finished work, one short transaction as the runtime role bound to
        the tenant (as the API's ``complete`` is): in progress -> wrap-up, then
        ``finish_wrap_ups``, the engine's own function (points back, contact completed,
        event, trail, wake-up)."""
        from app.db.base import utcnow
        from app.routing.transitions import finish_wrap_ups

        for _ in range(10):
            try:
                now = utcnow()
                async with pool.acquire() as conn, conn.transaction():
                    await conn.execute(
                        "SELECT set_config('app.tenant_id', $1, true)", str(tenant_id)
                    )
                    await conn.execute(
                        """
                        UPDATE contacts SET state = 'wrap_up', wrap_up_at = $3,
                               version = version + 1, updated_at = $3
                         WHERE tenant_id = $1 AND id = ANY($2::uuid[]) AND state = 'in_progress'
                        """,
                        tenant_id,
                        [c for _, c in items],
                        now,
                    )
                    await conn.execute(
                        """
                        UPDATE reservations SET state = 'wrap_up', wrap_up_at = $3,
                               wrap_up_expires_at = $3
                         WHERE tenant_id = $1 AND id = ANY($2::uuid[]) AND state = 'in_progress'
                        """,
                        tenant_id,
                        [r for r, _ in items],
                        now,
                    )
                    await finish_wrap_ups(
                        conn, now=now, reason="no-wrap-up", reservation_ids=[r for r, _ in items]
                    )
                counts["completed"] += len(items)
                return
            except asyncpg.DeadlockDetectedError:
                counts["deadlocks"] += 1
            except Exception as exc:
                failed(exc)
                return
        counts["failed"] += len(items)

    async def finish_batches() -> None:
        """Every 50 ms, the work whose handle time is over ends, a transaction per
        tenant (``--complete batch``)."""
        while True:
            await asyncio.sleep(0.05)
            now_m = time.monotonic()
            per_tenant: dict[uuid.UUID, list[tuple[uuid.UUID, uuid.UUID]]] = {}
            while finishing and finishing[0][0] <= now_m:
                _, t, rid, _agent, cid = finishing.popleft()
                per_tenant.setdefault(t, []).append((rid, cid))
            for t, items in per_tenant.items():
                spawn(finish_tenant(t, items))

    async def accept(
        tenant_id: uuid.UUID, rid: uuid.UUID, agent_id: uuid.UUID, waited: float, got: float
    ) -> None:
        scope = mint_scope(tenant_id)
        try:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT set_config('app.tenant_id', $1, true)", str(tenant_id))
                res = await reservations.accept(conn, scope, rid, agent_id)
        except SwitchboardError:
            counts["conflicts"] += 1
            return
        except Exception as exc:
            failed(exc)
            return
        done = time.time()
        counts["accepted"] += 1
        enq = res.offered_at.timestamp() - waited
        latencies.append((enq, (got - enq) * 1000.0, (done - enq) * 1000.0))
        if batched:
            finishing.append((time.monotonic() + handle, tenant_id, rid, agent_id, res.contact_id))
        else:
            loop.call_later(handle, lambda: spawn(finish(tenant_id, rid, agent_id)))

    async def fetch_loop() -> None:
        while True:
            await wake.wait()
            wake.clear()
            await asyncio.sleep(0.001)  # let a burst of notifications gather
            batch = pending[:]
            pending.clear()
            if not batch:
                continue
            got = {(t, i): r for t, i, r in batch}
            rows = await reader.fetch(
                """
                SELECT o.tenant_id, o.id, o.agent_id, o.payload::text AS payload
                  FROM outbox_events o
                  JOIN unnest($1::uuid[], $2::bigint[]) AS v(t, i)
                    ON o.tenant_id = v.t AND o.id = v.i
                 WHERE o.topic = 'offer.created'
                """,
                [t for t, _, _ in batch],
                [i for _, i, _ in batch],
            )
            if paused:
                continue
            import json

            for r in rows:
                p = json.loads(r["payload"])
                counts["offers"] += 1
                spawn(
                    accept(
                        r["tenant_id"],
                        uuid.UUID(p["reservation_id"]),
                        r["agent_id"],
                        float(p["waited_seconds"]),
                        got[(str(r["tenant_id"]), r["id"])],
                    )
                )

    loop = asyncio.get_running_loop()
    await listener.add_listener(OUTBOX_CHANNEL, on_notify)
    fetcher = asyncio.create_task(fetch_loop())
    finisher = asyncio.create_task(finish_batches())
    commands.reply({"ready": True, "own_pids": sorted(own)})
    while True:
        c = await commands.queue.get()
        if c["cmd"] == "stats":
            commands.reply(
                {
                    **counts,
                    "cpu": _cpu(),
                    "latencies": latencies[:],
                    "errors": dict(errors),
                    "inflight": len(tasks),
                }
            )
            latencies.clear()
            errors.clear()
        elif c["cmd"] == "pause":
            paused = bool(c["value"])
            commands.reply({"paused": paused})
        elif c["cmd"] == "stop":
            break
    for background in (fetcher, finisher):
        background.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await background
    for t in list(tasks):
        t.cancel()
    await listener.close()
    await reader.close()
    pool.terminate()  # in-flight work is moot now; closing would wait for it
    commands.reply({"stopped": True})


def main(kind: str, cfg: dict[str, Any], pipe: Connection) -> None:
    """multiprocessing entry point (spawn)."""
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    runner = run_generator if kind == "generator" else run_acceptor
    asyncio.run(runner(cfg, pipe))


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)
