"""What tracing costs the API: the same server with tracing off, sampled at 0.1, at 1.0.

Starts one uvicorn process per configuration on 127.0.0.1 (free ports), all against one
PostgreSQL: SWITCHBOARD_DATABASE_URL when set, else a throwaway embedded server. Then
drives an authenticated ``GET /v1/me`` and ``GET /healthz`` with a closed-loop load
generator (raw asyncio HTTP/1.1 over keep-alive connections, so that the client costs
little of the shared CPU): a fixed number of requests per endpoint per round, rounds
alternating between configurations (and rotating their order) so that noise from the
machine falls on all of them alike. Prints one JSON document: per configuration and
endpoint the median over rounds of requests/s, p50 and p99 latency and the server's
CPU time per request, and each traced configuration's cost relative to tracing off.

Exporter "none" in every traced configuration: spans are created, sampled, ended and
dropped; the cost of exporting them (a background thread encoding OTLP) is not in here.
``reference-fastapi-native-1.0`` is FastAPI's built-in instrumentation (what a global
tracer provider would switch on, operation spans included) sampled at 1.0, for scale.

    .venv/bin/python loadtests/bench_telemetry.py                 # ~2 minutes
    .venv/bin/python loadtests/bench_telemetry.py --requests 500 --rounds 3

Not a timed test: it prints numbers and fails only when a request fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
PHASE_TIMEOUT_S = 300  # one endpoint, one round, one configuration: a hard stop


@dataclass(frozen=True)
class Config:
    name: str
    env: dict[str, str]
    app: str = "app.main:create_app"


CONFIGS = [
    Config("off", {"SWITCHBOARD_OTEL_ENABLED": "false"}),
    Config(
        "ratio-0.1",
        {
            "SWITCHBOARD_OTEL_ENABLED": "true",
            "SWITCHBOARD_OTEL_EXPORTER": "none",
            "SWITCHBOARD_OTEL_SAMPLE_RATIO": "0.1",
        },
    ),
    Config(
        "ratio-1.0",
        {
            "SWITCHBOARD_OTEL_ENABLED": "true",
            "SWITCHBOARD_OTEL_EXPORTER": "none",
            "SWITCHBOARD_OTEL_SAMPLE_RATIO": "1.0",
        },
    ),
]
NATIVE = Config(
    "reference-fastapi-native-1.0",
    {"SWITCHBOARD_OTEL_ENABLED": "false"},
    app="bench_telemetry:fastapi_native_app",
)


def fastapi_native_app() -> Any:
    """uvicorn factory for the reference: our tracing off, FastAPI's native tracing on."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    from app.main import create_app

    trace.set_tracer_provider(
        TracerProvider(sampler=ParentBased(TraceIdRatioBased(1.0)), shutdown_on_exit=False)
    )
    app = create_app()
    app._telemetry["tracing"] = True  # undo create_app's opt-out, for this reference only
    return app


# -- database -------------------------------------------------------------------------


@contextlib.contextmanager
def database() -> Iterator[str]:
    """Yield the runtime role's URL of a fresh, migrated database; drop it afterwards."""
    from app.config import Settings
    from app.db import bootstrap
    from app.db.embedded import EmbeddedPostgres

    settings = Settings()
    pg: EmbeddedPostgres | None = None
    base: Path | None = None
    server_url = os.environ.get("SWITCHBOARD_DATABASE_URL")
    if not server_url:
        # Not under a 0700 directory: as root, the server runs as another user.
        base = Path(tempfile.mkdtemp(prefix="switchboard-bench-pg-"))
        base.chmod(0o755)
        pg = EmbeddedPostgres(base / "data", system_user=settings.pg_system_user, durable=False)
        pg.start()
        server_url = pg.url("postgres")
    name = f"sb_bench_{os.getpid()}"
    try:
        asyncio.run(bootstrap.ensure_database(settings, server_url, name))
        urls = bootstrap.urls_for(settings, server_url, database=name)
        bootstrap.migrate(urls.admin)
        yield urls.app
    finally:
        with contextlib.suppress(Exception):
            asyncio.run(bootstrap.drop_database(server_url, name))
        if pg is not None:
            pg.stop()
        if base is not None:
            shutil.rmtree(base, ignore_errors=True)


# -- servers --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    config: Config
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def cpu_seconds(self) -> float:
        """CPU time of the server's live threads, in nanoseconds' resolution (Linux).

        /proc/PID/stat counts in 10 ms ticks, too coarse for a 0.5 s phase; schedstat
        is exact but per thread (a thread that exits mid-phase would be lost: the
        threadpool's workers only retire after seconds of idleness)."""
        total = 0
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            with contextlib.suppress(OSError):
                total += int((task / "schedstat").read_text().split()[0])
        return total / 1e9


def start_server(config: Config, env: dict[str, str], workdir: Path) -> Server:
    port = free_port()
    log = workdir / f"{config.name}.log"
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        config.app,
        "--app-dir",
        str(ROOT / "loadtests"),
        "--host",
        HOST,
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            argv, cwd=ROOT, env={**env, **config.env}, stdout=out, stderr=subprocess.STDOUT
        )
    server = Server(config, port, process, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{config.name} exited: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError):
            status, _ = asyncio.run(_one(port, b"GET /readyz HTTP/1.1\r\nHost: b\r\n\r\n"))
            if status == 200:
                return server
        time.sleep(0.2)
    stop_server(server)
    raise RuntimeError(f"{config.name} did not become ready: {log.read_text()[-2000:]}")


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=5)


# -- load -----------------------------------------------------------------------------


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length is None:
        raise RuntimeError("response without content-length")
    return status, await reader.readexactly(length)


async def _one(port: int, raw: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(raw)
        return await asyncio.wait_for(_read_response(reader), 10)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


@dataclass
class Phase:
    seconds: float
    latencies: list[float] = field(default_factory=list)
    failures: int = 0
    cpu_seconds: float = 0.0


async def drive(port: int, raw: bytes, requests: int, concurrency: int) -> Phase:
    """Closed loop: ``concurrency`` keep-alive connections share ``requests`` requests."""
    remaining = requests
    latencies: list[float] = []
    failures = 0

    async def worker() -> None:
        nonlocal remaining, failures
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                writer.write(raw)
                status, _ = await _read_response(reader)
                latencies.append(time.perf_counter() - started)
                if status != 200:
                    failures += 1
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), PHASE_TIMEOUT_S)
    return Phase(time.perf_counter() - started, latencies, failures)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summarize(phases: list[Phase]) -> dict[str, Any]:
    rounds = [
        {
            "rps": len(p.latencies) / p.seconds,
            "p50_ms": percentile(p.latencies, 0.50) * 1000,
            "p99_ms": percentile(p.latencies, 0.99) * 1000,
            "server_cpu_us_per_request": p.cpu_seconds / len(p.latencies) * 1e6,
        }
        for p in phases
    ]
    median = {k: round(statistics.median(r[k] for r in rounds), 3) for k in rounds[0]}
    return {**median, "rounds": [{k: round(v, 3) for k, v in r.items()} for r in rounds]}


def relative(result: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    def pct(key: str) -> float:
        return round((result[key] / base[key] - 1) * 100, 1)

    return {
        "rps_pct": pct("rps"),
        "p50_pct": pct("p50_ms"),
        "p99_pct": pct("p99_ms"),
        "server_cpu_pct": pct("server_cpu_us_per_request"),
        "server_cpu_us_added": round(
            result["server_cpu_us_per_request"] - base["server_cpu_us_per_request"], 1
        ),
    }


def signup(port: int) -> str:
    body = json.dumps(
        {
            "company_name": "Bench Telemetry",
            "email": f"bench-{uuid.uuid4().hex[:10]}@example.com",
            "password": "correct horse battery staple 42",
        }
    ).encode()
    raw = (
        b"POST /v1/signup HTTP/1.1\r\nHost: bench\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    status, answer = asyncio.run(_one(port, raw))
    if status != 201:
        raise RuntimeError(f"signup answered {status}: {answer[:500]!r}")
    key: str = json.loads(answer)["api_key"]
    return key


def run(args: argparse.Namespace) -> dict[str, Any]:
    from app.auth.jwt_keys import new_key

    configs = CONFIGS + ([] if args.skip_native else [NATIVE])
    workdir = Path(tempfile.mkdtemp(prefix="switchboard-bench-"))
    key = new_key()
    servers: list[Server] = []
    try:
        with database() as app_url:
            env = {
                **os.environ,
                "SWITCHBOARD_APP_DATABASE_URL": app_url,
                "SWITCHBOARD_DATA_DIR": str(workdir),
                "SWITCHBOARD_JWT_KEYS": json.dumps({"active_kid": key["kid"], "keys": [key]}),
            }
            for config in configs:  # one after the other: they share the data directory
                servers.append(start_server(config, env, workdir))
            api_key = signup(servers[0].port)
            endpoints = {
                "GET /v1/me": (
                    f"GET /v1/me HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {api_key}\r\n\r\n"
                ).encode(),
                "GET /healthz": b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n",
            }
            counts = {"GET /v1/me": args.requests, "GET /healthz": args.requests * 5}
            for server in servers:  # warm: connection pool, statement caches
                for raw in endpoints.values():
                    asyncio.run(drive(server.port, raw, args.warmup, args.concurrency))
            phases: dict[tuple[str, str], list[Phase]] = {}
            for r in range(args.rounds):
                order = servers[r % len(servers) :] + servers[: r % len(servers)]
                for server in order:
                    for endpoint, raw in endpoints.items():
                        cpu = server.cpu_seconds()
                        phase = asyncio.run(
                            drive(server.port, raw, counts[endpoint], args.concurrency)
                        )
                        phase.cpu_seconds = server.cpu_seconds() - cpu
                        phases.setdefault((server.config.name, endpoint), []).append(phase)
    finally:
        for server in servers:
            stop_server(server)
        shutil.rmtree(workdir, ignore_errors=True)

    failures = sum(p.failures for ps in phases.values() for p in ps)
    results: dict[str, dict[str, Any]] = {}
    for (config_name, endpoint), ps in phases.items():
        results.setdefault(config_name, {})[endpoint] = summarize(ps)
    base = results["off"]
    return {
        "benchmark": "telemetry-overhead",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "method": {
            "server": "uvicorn, 1 process, access log off; metrics on in every configuration",
            "exporter": "none (spans sampled, ended, dropped)",
            "load": "closed loop, raw asyncio HTTP/1.1 keep-alive",
            "concurrency": args.concurrency,
            "requests_per_round": {"GET /v1/me": args.requests, "GET /healthz": args.requests * 5},
            "rounds": args.rounds,
            "warmup_requests": args.warmup,
            "statistic": "median over rounds",
        },
        "failures": failures,
        "results": results,
        "relative_to_off": {
            name: {ep: relative(res[ep], base[ep]) for ep in res}
            for name, res in results.items()
            if name != "off"
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--requests", type=int, default=2000, help="GET /v1/me per round (5x for /healthz)"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--skip-native", action="store_true", help="no FastAPI-native reference")
    args = parser.parse_args()
    if not (1 <= args.requests <= 100_000 and 1 <= args.rounds <= 20):
        parser.error("--requests 1..100000, --rounds 1..20")
    document = run(args)
    print(json.dumps(document, indent=2))
    if document["failures"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
