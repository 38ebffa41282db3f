"""Orphan sweep benchmark: how fast ``app/storage/sweep.py`` goes through a tenant's
attachment objects on each backend, and what its per-page reference check costs against
a large ``attachments`` table (by primary key, ``id = ANY``) compared with the
``object_key = ANY`` check it does not use (no index on ``object_key``).

    .venv/bin/python -m loadtests.bench_storage_sweep            # 4,000 objects, 200,000 rows
    .venv/bin/python -m loadtests.bench_storage_sweep --objects 1000 --rows 20000  # smoke

A fresh migrated database (SWITCHBOARD_DATABASE_URL, a superuser, when set; else a
throwaway embedded PostgreSQL). Seeded by SQL as the superuser: one tenant and ``--rows``
attachment rows (foreign keys off for the seed: the rows need no conversations for this).
Half of the ``--objects`` objects are named by a row, half are orphans; the local store
is a temporary directory, S3 is moto's server on 127.0.0.1. The sweep itself runs as the
runtime role under row-level security, with the clock a day ahead. One JSON object on
stdout. Not a timed test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from loadtests import bench_routing_db as bdb


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--objects", type=int, default=4000, help="objects per backend")
    ap.add_argument("--rows", type=int, default=200_000, help="attachment rows of the tenant")
    ap.add_argument("--page", type=int, default=1000, help="keys checked per query")
    ap.add_argument("--rounds", type=int, default=5, help="rounds of the query comparison")
    return ap.parse_args()


async def seed(url: str, tenant: uuid.UUID, keys: dict[str, uuid.UUID], rows: int) -> None:
    from app.db.base import uuid7
    from app.storage.base import tenant_key

    now = datetime.now(UTC)
    conv = uuid.uuid4()
    records = [
        (tenant, aid, conv, key, "f.png", "image/png", 1, "stored", "provider", now)
        for key, aid in keys.items()
    ]
    while len(records) < rows:
        aid = uuid7()
        key = tenant_key(tenant, "conversations", str(conv), str(aid), "f.png")
        records.append((tenant, aid, conv, key, "f.png", "image/png", 1, "stored", "agent", now))
    conn = await bdb.connect(url)
    try:
        await conn.execute(
            "INSERT INTO tenants (id, name, slug, status, plan, created_at, updated_at) "
            "VALUES ($1, 'Bench', $2, 'active', 'growth', now(), now())",
            tenant,
            f"bench-sweep-{tenant.hex[:8]}",
        )
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.copy_records_to_table(
                "attachments",
                records=records,
                columns=(
                    "tenant_id",
                    "id",
                    "conversation_id",
                    "object_key",
                    "filename",
                    "content_type",
                    "max_bytes",
                    "status",
                    "uploaded_by",
                    "created_at",
                ),
            )
        await conn.execute("VACUUM ANALYZE attachments")
    finally:
        await conn.close()


async def compare_queries(
    url: str, tenant: uuid.UUID, keys: list[str], ids: list[uuid.UUID], rounds: int
) -> dict[str, float]:
    """Median milliseconds of one page's reference check, both ways, as the runtime role."""
    conn = await bdb.connect(url)
    out: dict[str, list[float]] = {"by_id_ms": [], "by_object_key_ms": []}
    try:
        for _ in range(rounds):
            for name, sql, arg in (
                ("by_id_ms", "id = ANY($2::uuid[])", ids),
                ("by_object_key_ms", "object_key = ANY($2::text[])", keys),
            ):
                async with conn.transaction():
                    await conn.execute("SELECT set_config('app.tenant_id', $1, true)", str(tenant))
                    started = time.perf_counter()
                    await conn.fetch(
                        f"SELECT id, object_key FROM attachments WHERE tenant_id = $1 AND {sql}",  # noqa: S608
                        tenant,
                        arg,
                    )
                    out[name].append((time.perf_counter() - started) * 1000)
    finally:
        await conn.close()
    return {k: round(statistics.median(v), 2) for k, v in out.items()}


async def sweep_backend(
    name: str,
    store: Any,
    app_url: str,
    tenant: uuid.UUID,
    keys: dict[str, uuid.UUID],
    orphans: list[str],
    page: int,
) -> dict[str, Any]:
    from app.db.engine import create_engine, make_session_factory
    from app.db.tenant import mint_scope
    from app.storage.sweep import sweep

    started = time.perf_counter()
    for key in [*keys, *orphans]:
        await store.put(key, b"\x89PNG bench", "image/png")
    put_s = time.perf_counter() - started
    engine = create_engine(app_url, pool_size=2, max_overflow=0)
    factory = make_session_factory(engine)
    later = datetime.now(UTC) + timedelta(hours=25)
    result: dict[str, Any] = {"objects": len(keys) + len(orphans), "put_s": round(put_s, 2)}
    try:
        for label, dry in (("dry_run", True), ("sweep", False)):
            started = time.perf_counter()
            report = await sweep(
                factory,
                store,
                [mint_scope(tenant)],
                grace=timedelta(hours=24),
                now=later,
                dry_run=dry,
                page_size=page,
            )
            seconds = time.perf_counter() - started
            totals = report.totals
            result[label] = {
                "seconds": round(seconds, 2),
                "objects_per_s": round(totals.scanned / seconds),
                "scanned": totals.scanned,
                "kept_referenced": totals.kept_referenced,
                "orphaned": totals.orphaned,
                "deleted": totals.deleted,
            }
    finally:
        await engine.dispose()
    remaining = sum([len(p) async for p in store.list_objects(f"tenants/{tenant}/")])
    result["remaining"] = remaining
    print(f"[bench_storage_sweep] {name}: {result}", file=sys.stderr)
    return result


def main() -> None:
    args = parse()
    from app.db.base import uuid7
    from app.storage.base import tenant_key
    from app.storage.local import LocalObjectStore, url_signing_secret
    from app.storage.s3 import S3ObjectStore
    from tests.moto_s3 import aws_client, start_moto

    tenant = uuid.uuid4()
    conv = str(uuid.uuid4())
    half = args.objects // 2
    referenced = {
        tenant_key(tenant, "conversations", conv, str(aid), "f.png"): aid
        for aid in (uuid7() for _ in range(half))
    }
    orphans = [
        tenant_key(tenant, "conversations", conv, str(uuid7()), "f.png")
        for _ in range(args.objects - half)
    ]
    out: dict[str, Any] = {"scenario": vars(args)}
    moto, endpoint = start_moto()
    try:
        with bdb.server(durable=False, stat_statements=False) as srv, bdb.database(srv) as db:
            asyncio.run(seed(db.admin, tenant, referenced, args.rows))
            page_keys = list(referenced)[: args.page]
            out["reference_check_per_page"] = asyncio.run(
                compare_queries(
                    db.app, tenant, page_keys, [referenced[k] for k in page_keys], args.rounds
                )
            )
            key = secrets.token_bytes(32)
            with tempfile.TemporaryDirectory() as tmp:
                local = LocalObjectStore(
                    Path(tmp), url_signing_secret(key), "http://127.0.0.1", keys=[key]
                )
                out["local"] = asyncio.run(
                    sweep_backend("local", local, db.app, tenant, referenced, orphans, args.page)
                )
            s3 = aws_client("s3", endpoint)
            s3.create_bucket(Bucket="bench-sweep")
            store = S3ObjectStore("bench-sweep", client=s3)
            out["s3_moto"] = asyncio.run(
                sweep_backend("s3", store, db.app, tenant, referenced, orphans, args.page)
            )
    finally:
        moto.stop()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
