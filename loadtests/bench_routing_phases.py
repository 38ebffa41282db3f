"""The routing benchmark's moving parts (routers, load processes) and its measurements,
each taken from the database's own timestamps over a window of wall-clock time."""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from loadtests import bench_routing_db as bdb
from loadtests.bench_routing_load import utc


def log(message: str) -> None:
    print(f"[bench_routing {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentiles(
    values: list[float], ps: tuple[float, ...] = (50, 95, 99)
) -> dict[str, float | None]:
    """Nearest-rank percentiles; values may hold inf (never offered), which comes out
    as None (JSON null: longer than the measurement)."""
    if not values:
        return {f"p{p:g}": None for p in ps}
    s = sorted(values)
    out: dict[str, float | None] = {}
    for p in ps:
        k = max(0, min(len(s) - 1, math.ceil(p / 100.0 * len(s)) - 1))
        out[f"p{p:g}"] = round(s[k], 2) if math.isfinite(s[k]) else None
    return out


# ------------------------------------------------------------------------------ routers


@dataclass
class Routers:
    db: bdb.BenchDb
    count: int
    log_dir: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[TextIO] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)

    def start(self) -> None:
        exe = Path(sys.executable).parent / "switchboard"
        argv = [str(exe)] if exe.exists() else [shutil.which("switchboard") or "switchboard"]
        env = dict(os.environ)
        env.update(
            PYTHONFAULTHANDLER="1",  # a stuck router dumps its stacks on SIGABRT (stop())
            SWITCHBOARD_DATABASE_URL=self.db.admin,
            SWITCHBOARD_APP_DATABASE_URL=self.db.app,
            SWITCHBOARD_ROUTER_DATABASE_URL=self.db.router,
        )
        for i in range(self.count):
            out = (self.log_dir / f"router-{i}.log").open("w")
            self.logs.append(out)
            self.procs.append(
                subprocess.Popen(  # noqa: S603 - our own CLI
                    [*argv, "router"], env=env, stdout=out, stderr=subprocess.STDOUT
                )
            )
        asyncio.run(self._wait_for_leases())

    async def _wait_for_leases(self, limit_s: float = 60.0) -> None:
        """Until the 64 shards are leased and split between the workers."""
        conn = await bdb.connect(self.db.admin)
        try:
            deadline = time.monotonic() + limit_s
            while True:
                row = await conn.fetchrow(
                    "SELECT count(*) AS leased, count(DISTINCT owner) AS owners, "
                    "max(n) AS most FROM (SELECT owner, count(*) OVER (PARTITION BY owner) AS n "
                    "FROM routing_shards WHERE owner IS NOT NULL AND lease_expires_at > now()) s"
                )
                fair = -(-64 // self.count)
                if row["leased"] == 64 and row["owners"] == self.count and row["most"] <= fair:
                    return
                if any(p.poll() is not None for p in self.procs):
                    raise RuntimeError(f"a router exited; see {self.log_dir}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"routers did not split the shards: {dict(row)}")
                await asyncio.sleep(0.2)
        finally:
            await conn.close()

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def cpu(self) -> float:
        return sum(bdb.cpu_seconds(p) for p in self.pids)

    def peak_rss_mb(self) -> list[float | None]:
        return [bdb.peak_rss_mb(p) for p in self.pids]

    def failed_rounds(self) -> dict[str, int]:
        """Rounds rolled back (deadlocks, lost leases), from the routers' logs."""
        out: dict[str, int] = {}
        for i in range(self.count):
            with contextlib.suppress(OSError):
                for line in (self.log_dir / f"router-{i}.log").read_text().splitlines():
                    if "routing round failed:" in line:
                        reason = line.split("routing round failed:", 1)[1].strip()[:60]
                        out[reason] = out.get(reason, 0) + 1
        return out

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for i, p in enumerate(self.procs):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                # Stuck: its Python stacks go to its log (faulthandler), then it dies.
                self.stuck.append(f"router-{i} did not exit within 10 s of SIGTERM")
                p.send_signal(signal.SIGABRT)
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        for f in self.logs:
            f.close()


# --------------------------------------------------------------------------------- load


@dataclass
class Load:
    """Generator and acceptor processes (see bench_routing_load)."""

    db: bdb.BenchDb
    tenants: list[bdb.Tenant]
    generators: int
    acceptors: int
    handle_seconds: float
    connections: int
    enqueue: str = "lean"  # lean | service
    complete: str = "batch"  # batch | service
    procs: list[tuple[str, Any, Any]] = field(default_factory=list)  # kind, process, pipe

    def start(self) -> None:
        from loadtests import bench_routing_load

        ctx = mp.get_context("spawn")
        for i in range(self.generators):
            mine = [(str(t.id), str(t.queue_id)) for t in self.tenants[i :: self.generators]]
            cfg = {
                "app_url": self.db.app,
                "tenants": mine,
                "seed": 1000 + i,
                "connections": self.connections,
                "max_inflight": 4 * self.connections + 200,
                "enqueue": self.enqueue,
            }
            self._spawn(ctx, bench_routing_load.main, "generator", cfg)
        for i in range(self.acceptors):
            cfg = {
                "app_url": self.db.app,
                "admin_url": self.db.admin,
                "index": i,
                "parts": self.acceptors,
                "handle_seconds": self.handle_seconds,
                "connections": self.connections,
                "complete": self.complete,
            }
            self._spawn(ctx, bench_routing_load.main, "acceptor", cfg)
        for kind, _, pipe in self.procs:
            if kind == "acceptor" and not pipe.poll(60):
                raise RuntimeError("an acceptor did not start")
            if kind == "acceptor":
                pipe.recv()

    def _spawn(self, ctx: Any, target: Any, kind: str, cfg: dict[str, Any]) -> None:
        parent, child = ctx.Pipe()
        p = ctx.Process(target=target, args=(kind, cfg, child), daemon=True)
        p.start()
        self.procs.append((kind, p, parent))

    def _ask(self, kind: str, message: dict[str, Any], reply: bool = True) -> list[Any]:
        pipes = [pipe for k, _, pipe in self.procs if k == kind]
        for pipe in pipes:
            pipe.send(message)
        if not reply:
            return []
        out = []
        for pipe in pipes:
            if not pipe.poll(120):
                raise RuntimeError(f"a {kind} process did not answer {message['cmd']}")
            out.append(pipe.recv())
        return out

    def set_rate(self, rate: float) -> None:
        self._ask("generator", {"cmd": "rate", "value": rate / self.generators}, reply=False)

    def pause_acceptors(self, paused: bool) -> None:
        self._ask("acceptor", {"cmd": "pause", "value": paused})

    def stats(self) -> dict[str, Any]:
        gens = self._ask("generator", {"cmd": "stats"})
        accs = self._ask("acceptor", {"cmd": "stats"})
        return {"generators": gens, "acceptors": accs}

    def cpu(self) -> dict[str, float]:
        out = {"generator": 0.0, "acceptor": 0.0}
        for kind, p, _ in self.procs:
            out[kind] += bdb.cpu_seconds(p.pid)
        return out

    def stop(self) -> None:
        for _, _, pipe in self.procs:
            with contextlib.suppress(OSError):
                pipe.send({"cmd": "stop"})
        for _, p, _ in self.procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)


# ------------------------------------------------------------------------- measurement


@dataclass
class Cpu:
    """CPU seconds per component, from /proc (exact, whatever else the machine does)."""

    routers: float
    postgres: float
    generator: float
    acceptor: float
    wall: float

    @classmethod
    def now(cls, routers: Routers | None, load: Load, postmaster: int | None) -> Cpu:
        lc = load.cpu()
        return cls(
            routers=routers.cpu() if routers else 0.0,
            postgres=bdb.server_cpu(postmaster),
            generator=lc["generator"],
            acceptor=lc["acceptor"],
            wall=time.monotonic(),
        )

    def since(self, before: Cpu, assignments: int) -> dict[str, Any]:
        wall = self.wall - before.wall
        parts = {
            k: getattr(self, k) - getattr(before, k)
            for k in ("routers", "postgres", "generator", "acceptor")
        }
        total = sum(parts.values())
        return {
            "cores_used": {k: round(v / wall, 2) for k, v in parts.items()}
            | {"total": round(total / wall, 2)},
            "cpu_ms_per_assignment": {
                k: round(v * 1000.0 / assignments, 3) if assignments else None
                for k, v in parts.items()
            }
            | {"total": round(total * 1000.0 / assignments, 3) if assignments else None},
        }


async def window_counts(url: str, t0: float, t1: float) -> dict[str, Any]:
    """Arrivals, offers and accepts in [t0, t1) and the line (enqueued, not yet accepted)
    at both ends, from the contacts' own timestamps."""
    conn = await bdb.connect(url)
    try:
        row = await conn.fetchrow(
            """
            SELECT count(*) FILTER (WHERE enqueued_at >= $1 AND enqueued_at < $2) AS arrivals,
                   count(*) FILTER (WHERE offered_at >= $1 AND offered_at < $2) AS offered,
                   count(*) FILTER (WHERE answered_at >= $1 AND answered_at < $2) AS accepted,
                   count(*) FILTER (WHERE enqueued_at < $1
                                    AND (answered_at IS NULL OR answered_at >= $1)
                                    AND (abandoned_at IS NULL OR abandoned_at >= $1))
                     AS line_start,
                   count(*) FILTER (WHERE enqueued_at < $2
                                    AND (answered_at IS NULL OR answered_at >= $2)
                                    AND (abandoned_at IS NULL OR abandoned_at >= $2))
                     AS line_end
              FROM contacts
            """,
            utc(t0),
            utc(t1),
        )
        lat = await conn.fetch(
            "SELECT extract(epoch FROM offered_at - enqueued_at) * 1000.0 AS ms FROM contacts "
            "WHERE enqueued_at >= $1 AND enqueued_at < $2 AND state <> 'abandoned'",
            utc(t0),
            utc(t1),
        )
    finally:
        await conn.close()
    values = [float(r["ms"]) if r["ms"] is not None else float("inf") for r in lat]
    return dict(row) | {"latencies": values}


async def line_length(url: str) -> int:
    conn = await bdb.connect(url)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM contacts WHERE answered_at IS NULL AND state <> 'abandoned'"
            )
        )
    finally:
        await conn.close()


def acceptor_latencies(stats: dict[str, Any], t0: float, t1: float) -> dict[str, list[float]]:
    offered: list[float] = []
    accepted: list[float] = []
    for a in stats["acceptors"]:
        for enq, got, done in a["latencies"]:
            if t0 <= enq < t1:
                offered.append(got)
                accepted.append(done)
    return {"offered": offered, "accepted": accepted}


def errors_of(stats: dict[str, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in ("generators", "acceptors"):
        for s in stats[part]:
            for k, v in s.get("errors", {}).items():
                out[k] = out.get(k, 0) + v
    return out


# ------------------------------------------------------------------------------- drain


async def drain(db: bdb.BenchDb, per_tenant: int, limit_s: float = 120.0) -> dict[str, Any]:
    """The router alone: a line of ``per_tenant`` contacts in every queue appears in one
    commit (every agent has room for two chats, so all can be offered at once) and the
    routers offer them; the acceptors are paused. Offers per second from the commit to
    the last offer."""
    conn = await bdb.connect(db.admin)
    try:
        async with conn.transaction():
            n = await conn.fetchval(
                """
                WITH ins AS (
                  INSERT INTO contacts (tenant_id, id, shard, channel, queue_id,
                      original_queue_id, priority, state, mode, extra_skills, attributes,
                      preferred_agent_ids, enqueued_at, queue_entered_at, missed_offers,
                      version, created_at, updated_at)
                  SELECT q.tenant_id, gen_random_uuid(), switchboard_shard_of(q.tenant_id),
                         'chat', q.id, q.id, 5, 'queued', 'live', '[]', '{}', '{}',
                         clock_timestamp(), clock_timestamp(), 0, 1, now(), now()
                    FROM queues q CROSS JOIN generate_series(1, $1)
                  RETURNING 1)
                SELECT count(*) FROM ins
                """,
                per_tenant,
            )
            await conn.execute(
                """
                INSERT INTO routing_work AS w (tenant_id, shard, due_at, seq)
                SELECT id, switchboard_shard_of(id), now(), 1 FROM tenants
                ON CONFLICT (tenant_id) DO UPDATE SET due_at = EXCLUDED.due_at, seq = w.seq + 1
                """
            )
            await conn.execute(
                "SELECT pg_notify('sb_routing', s::text) FROM generate_series(0, 63) s"
            )
        t0 = time.time()
        deadline = time.monotonic() + limit_s
        while True:
            row = await conn.fetchrow(
                "SELECT count(*) FILTER (WHERE state = 'offered') AS offered, "
                "max(offered_at) AS last FROM contacts"
            )
            seen = time.time()
            if row["offered"] >= n or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        # Seen by polling (every 50 ms): offered_at is stamped at the start of a round,
        # so the last offered_at would leave out the last round's own time.
        elapsed = seen - t0
        return {
            "contacts": n,
            "offered": row["offered"],
            "seconds": round(elapsed, 3),
            "offers_per_s": round(row["offered"] / elapsed, 1) if elapsed > 0 else None,
        }
    finally:
        await conn.close()
