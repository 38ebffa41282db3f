"""Deleting attachment objects that nothing references (orphans).

Attachment bytes reach object storage before the transaction that records them commits
(an inbound message's media, a presigned upload), so a rollback or a deleted
conversation leaves objects no ``attachments`` row names. The sweep lists each tenant's
attachment prefix (``tenants/<tenant>/conversations/``, the keys
``app.conversations`` builds: ``.../<conversation>/<attachment>/<filename>``) a page
at a time, checks the page against the tenant's rows in one query under the tenant's
row-level security, and deletes what is unreferenced and older than the grace period.

Why this is safe: an upload grant inserts its (pending) row before the object can exist,
and an inbound message writes its object a moment before its row, in one transaction;
so an object older than the grace period with no row has no transaction left that could
still name it. A pending row (an upload grant no message has named yet) keeps its object
until the grant itself is older than the grace period: then the grant expires (its row
is deleted, ``status = 'pending'`` in the statement, so a ``claim_upload`` holding the
row's lock wins and the row stays) and the object goes with it; a message naming it
later is refused (``unknown-attachment``). Keys outside that layout are never deleted,
nor anything outside a tenant's attachment prefix, nor anything while a dry run. Logs
carry counts, never keys or bytes (a key holds the customer's filename).
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.core.metrics import STORAGE_SWEEP
from app.db.tenant import TenantScope, bind_tenant, mint_scope
from app.routing.connection import raw
from app.storage.base import TENANTS, ListedObject, ObjectStore, tenant_prefix

log = logging.getLogger("switchboard.storage.sweep")

ATTACHMENTS = "conversations"  # tenant_key(tenant, "conversations", conv, attachment, name)
PAGE_SIZE = 1000  # keys listed, then checked in one query
DELETES_IN_FLIGHT = 16  # each a request to S3 (or a file removal) in a worker thread
TENANT_PAGE = 500
INTERVAL_SECONDS = 3600.0
JITTER = 0.1  # each pause is the interval +-10%, so replicas drift apart


@dataclass
class SweepCounts:
    """What one sweep saw: every scanned object is kept (referenced, young or not in the
    attachment layout) or orphaned; an orphan is deleted, or failed to delete, or left
    alone by a dry run."""

    scanned: int = 0
    kept_referenced: int = 0
    kept_young: int = 0
    kept_unrecognised: int = 0
    orphaned: int = 0
    grants_expired: int = 0  # pending uploads never sent, older than the grace period
    deleted: int = 0
    failed: int = 0

    def add(self, other: SweepCounts) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)


@dataclass
class SweepReport:
    dry_run: bool
    grace_hours: float
    cutoff: datetime
    totals: SweepCounts = field(default_factory=SweepCounts)
    tenants: dict[uuid.UUID, SweepCounts] = field(default_factory=dict)
    tenants_failed: list[uuid.UUID] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """Counts only; tenants listed when they had objects or failed."""
        return {
            "dry_run": self.dry_run,
            "grace_hours": self.grace_hours,
            "cutoff": self.cutoff.isoformat(),
            **asdict(self.totals),
            "tenants": {str(t): asdict(c) for t, c in self.tenants.items() if c.scanned},
            "tenants_failed": [str(t) for t in self.tenants_failed],
        }


def attachment_id_of(key: str, tenant_id: uuid.UUID) -> uuid.UUID | None:
    """The attachment id in a key of ``tenant_id``'s attachment layout, else None."""
    parts = key.split("/")
    if len(parts) != 6 or parts[0] != TENANTS or parts[2] != ATTACHMENTS or not parts[5]:
        return None
    try:
        if uuid.UUID(parts[1]) != tenant_id:
            return None
        uuid.UUID(parts[3])
        return uuid.UUID(parts[4])
    except ValueError:
        return None


async def every_tenant(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[TenantScope]:
    """Every tenant (a platform table), a page at a time in id order: a tenant signed
    up during the sweep is visited or not, none is visited twice."""
    after = uuid.UUID(int=0)
    while True:
        async with factory() as session, session.begin():
            conn = await raw(session)
            ids = await conn.fetch(
                "SELECT id FROM tenants WHERE id > $1 ORDER BY id LIMIT $2", after, TENANT_PAGE
            )
        for row in ids:
            yield mint_scope(row["id"])
        if len(ids) < TENANT_PAGE:
            return
        after = ids[-1]["id"]


async def _referenced(
    factory: async_sessionmaker[AsyncSession],
    scope: TenantScope,
    candidates: dict[str, uuid.UUID],
    *,
    cutoff: datetime,
    dry_run: bool,
) -> tuple[set[str], int]:
    """The candidate keys some row of the tenant names, and how many pending grants
    older than ``cutoff`` expired (deleted unless ``dry_run``; their keys are then not
    named). One query per page, by primary key (the key's attachment id), under the
    tenant's row-level security. A row with that id but another key still keeps the
    object: when in doubt, keep."""
    async with factory() as session, session.begin():
        await bind_tenant(session, scope)
        conn = await raw(session)
        # Fail closed: rows hidden by a missing tenant binding would read as "no
        # reference" and delete everything.
        bound = await conn.fetchval("SELECT current_setting('app.tenant_id', true)")
        if bound != str(scope.tenant_id):
            raise RuntimeError("the tenant is not bound; nothing is deleted")
        ids = list(set(candidates.values()))
        if dry_run:
            expired = await conn.fetch(
                "SELECT id FROM attachments WHERE tenant_id = $1 AND id = ANY($2::uuid[]) "
                "AND status = 'pending' AND message_id IS NULL AND created_at < $3",
                scope.tenant_id,
                ids,
                cutoff,
            )
        else:
            expired = await conn.fetch(
                "DELETE FROM attachments WHERE tenant_id = $1 AND id = ANY($2::uuid[]) "
                "AND status = 'pending' AND message_id IS NULL AND created_at < $3 "
                "RETURNING id",
                scope.tenant_id,
                ids,
                cutoff,
            )
        gone = {r["id"] for r in expired}
        rows = await conn.fetch(
            "SELECT id, object_key FROM attachments WHERE tenant_id = $1 AND id = ANY($2::uuid[])",
            scope.tenant_id,
            [i for i in ids if i not in gone],
        )
    named = {r["id"] for r in rows}
    keys = {r["object_key"] for r in rows}
    return {k for k, aid in candidates.items() if k in keys or aid in named}, len(gone)


async def _sweep_page(
    factory: async_sessionmaker[AsyncSession],
    store: ObjectStore,
    scope: TenantScope,
    page: list[ListedObject],
    *,
    cutoff: datetime,
    dry_run: bool,
) -> SweepCounts:
    counts = SweepCounts(scanned=len(page))
    candidates: dict[str, uuid.UUID] = {}
    for obj in page:
        aid = attachment_id_of(obj.key, scope.tenant_id)
        if obj.last_modified >= cutoff:
            counts.kept_young += 1
        elif aid is None:
            counts.kept_unrecognised += 1
        else:
            candidates[obj.key] = aid
    referenced, counts.grants_expired = (
        await _referenced(factory, scope, candidates, cutoff=cutoff, dry_run=dry_run)
        if candidates
        else (set(), 0)
    )
    counts.kept_referenced = len(referenced)
    orphans = [k for k in candidates if k not in referenced]
    counts.orphaned = len(orphans)
    if dry_run:
        return counts
    for start in range(0, len(orphans), DELETES_IN_FLIGHT):
        chunk = orphans[start : start + DELETES_IN_FLIGHT]
        results = await asyncio.gather(*(store.delete(k) for k in chunk), return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                counts.failed += 1
                log.warning(
                    "orphan delete failed (tenant %s): %s", scope.tenant_id, type(result).__name__
                )
            elif isinstance(result, BaseException):
                raise result  # cancellation: stop here
            else:
                counts.deleted += 1
    outcomes = ("kept_referenced", "kept_young", "kept_unrecognised", "grants_expired")
    for outcome in (*outcomes, "deleted", "failed"):
        STORAGE_SWEEP.inc(scope.tenant_id, outcome, n=getattr(counts, outcome))
    return counts


async def sweep_tenant(
    factory: async_sessionmaker[AsyncSession],
    store: ObjectStore,
    scope: TenantScope,
    *,
    cutoff: datetime,
    dry_run: bool = False,
    page_size: int = PAGE_SIZE,
) -> SweepCounts:
    """Sweep one tenant's attachment prefix: delete (unless ``dry_run``) the objects
    last written before ``cutoff`` that no ``attachments`` row names."""
    counts = SweepCounts()
    prefix = tenant_prefix(scope.tenant_id, ATTACHMENTS)
    async for page in store.list_objects(prefix, page_size=page_size):
        counts.add(await _sweep_page(factory, store, scope, page, cutoff=cutoff, dry_run=dry_run))
    return counts


async def sweep(
    factory: async_sessionmaker[AsyncSession],
    store: ObjectStore,
    tenants: AsyncIterable[TenantScope] | Iterable[TenantScope],
    *,
    grace: timedelta,
    now: datetime | None = None,
    dry_run: bool = False,
    page_size: int = PAGE_SIZE,
) -> SweepReport:
    """Sweep each tenant in turn (:func:`every_tenant` for all of them); one tenant's
    failure is logged and reported, and the others are still swept. ``now`` is the
    clock the grace period counts back from (tests move it forward)."""
    if grace <= timedelta(0):
        raise ValueError("the grace period must be positive")
    cutoff = (now or datetime.now(UTC)) - grace
    report = SweepReport(dry_run=dry_run, grace_hours=grace.total_seconds() / 3600, cutoff=cutoff)
    async for scope in _scopes(tenants):
        try:
            counts = await sweep_tenant(
                factory, store, scope, cutoff=cutoff, dry_run=dry_run, page_size=page_size
            )
        except Exception as exc:
            report.tenants_failed.append(scope.tenant_id)
            log.warning("orphan sweep of tenant %s failed: %r", scope.tenant_id, exc)
            continue
        report.tenants[scope.tenant_id] = counts
        report.totals.add(counts)
        if counts.scanned:
            log.info(
                "orphan sweep tenant %s%s: %s",
                scope.tenant_id,
                " (dry run)" if dry_run else "",
                " ".join(f"{k}={v}" for k, v in asdict(counts).items()),
            )
    return report


async def _scopes(
    tenants: AsyncIterable[TenantScope] | Iterable[TenantScope],
) -> AsyncIterator[TenantScope]:
    if isinstance(tenants, AsyncIterable):
        async for scope in tenants:
            yield scope
    else:
        for scope in tenants:
            yield scope


async def run_orphan_sweeper(
    factory: async_sessionmaker[AsyncSession],
    store: ObjectStore,
    settings: Settings,
    interval: float = INTERVAL_SECONDS,
) -> None:
    """The API process's periodic sweep (cancelled at shutdown). The first run comes
    after a random part of the interval, not at start-up: replicas started together
    spread out, and a restart loop does not list the bucket each time. Several
    replicas sweeping at once only repeat each other's work (deletes are idempotent)."""
    pause = interval * random.uniform(0.1, 1.0)  # noqa: S311 - spreading load, not a secret
    while True:
        await asyncio.sleep(pause)
        pause = interval * random.uniform(1 - JITTER, 1 + JITTER)  # noqa: S311
        try:
            report = await sweep(
                factory,
                store,
                every_tenant(factory),
                grace=timedelta(hours=settings.storage_orphan_grace_hours),
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("orphan sweep failed: %r", exc)
            continue
        totals = report.totals
        log.info(
            "orphan sweep: scanned=%d deleted=%d failed=%d grants_expired=%d "
            "kept_referenced=%d kept_young=%d kept_unrecognised=%d tenants_failed=%d",
            totals.scanned,
            totals.deleted,
            totals.failed,
            totals.grants_expired,
            totals.kept_referenced,
            totals.kept_young,
            totals.kept_unrecognised,
            len(report.tenants_failed),
        )
