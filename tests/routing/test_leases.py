"""Shard leases of the routing workers, in-process with short leases.

A worker that stops heartbeating is simulated by driving a ``Router``'s own lease loop
as a task and cancelling it: no clean leave, its leases simply stop being renewed (the
connection stays open, like a worker that hangs rather than dies).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator

import asyncpg
import pytest

from app.db.bootstrap import DatabaseUrls, asyncpg_kwargs
from app.routing.shards import SHARD_COUNT
from app.routing.worker import Router, RouterConfig
from tests.routing.conftest import running_router, wait_for
from tests.routing.traffic import Observer, Traffic, provision

LEASE = 2.0
# Rebalancing takes a renewal or two (each a third of the lease); allow a couple of lease
# periods, and a margin for a busy shared machine.
SETTLE = 2 * LEASE + 3.0

pytestmark = pytest.mark.usefixtures("clean_db")


@pytest.fixture
async def observer(db_urls: DatabaseUrls) -> AsyncIterator[Observer]:
    async with Observer.connect(db_urls) as o:
        yield o


@contextlib.asynccontextmanager
async def silent_worker(
    db_urls: DatabaseUrls, lease_seconds: float = LEASE
) -> AsyncIterator[tuple[Router, asyncpg.Connection, asyncio.Task[None]]]:
    """A worker that takes part in leasing (its real lease loop) but routes only when the
    test calls ``round``. Cancel the task to make it go silent (a crash: no leave)."""
    router = Router(RouterConfig(url=db_urls.router, lease_seconds=lease_seconds))
    conn = await asyncpg.connect(**asyncpg_kwargs(db_urls.router))
    await router._heartbeat(conn)
    await router._balance(conn)
    task = asyncio.create_task(router._lease_loop(conn))
    try:
        yield router, conn, task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await conn.close()


def held_by(owners: dict[str, list[int]], router: Router) -> set[int]:
    return set(owners.get(router.id, []))


async def test_one_worker_leases_every_shard(db_urls, observer):
    before = {r["shard"]: r["epoch"] for r in await observer.shards()}
    assert not await observer.owners()
    async with running_router(db_urls, lease_seconds=LEASE) as a:

        async def all_mine():
            owners = await observer.owners()
            return owners if len(held_by(owners, a)) == SHARD_COUNT else None

        owners = await wait_for(all_mine, timeout=SETTLE)
        assert list(owners) == [a.id]
        assert a.shards == set(range(SHARD_COUNT))
        # A new owner, a new epoch.
        assert all(r["epoch"] == before[r["shard"]] + 1 for r in await observer.shards())


async def test_a_joining_worker_takes_its_fair_share(db_urls, observer):
    async with running_router(db_urls, lease_seconds=LEASE) as a:
        await wait_for(lambda: _count(observer, a, SHARD_COUNT), timeout=SETTLE)
        before = {r["shard"]: r["epoch"] for r in await observer.shards()}
        async with running_router(db_urls, lease_seconds=LEASE) as b:
            fair = math.ceil(SHARD_COUNT / 2)

            async def halves():
                owners = await observer.owners()
                return (
                    owners
                    if len(held_by(owners, a)) == fair and len(held_by(owners, b)) == fair
                    else None
                )

            owners = await wait_for(halves, timeout=SETTLE)
            assert held_by(owners, a).isdisjoint(held_by(owners, b))
            # What the workers believe matches the table.
            await wait_for(lambda: _async(a.shards == held_by(owners, a)), timeout=SETTLE)
            await wait_for(lambda: _async(b.shards == held_by(owners, b)), timeout=SETTLE)
            # Each shard that changed hands has a new epoch; the others kept theirs.
            after = {r["shard"]: r["epoch"] for r in await observer.shards()}
            assert all(after[s] > before[s] for s in held_by(owners, b))
            assert all(after[s] == before[s] for s in held_by(owners, a))


async def test_a_clean_stop_hands_the_shards_back_at_once(db_urls, observer):
    async with running_router(db_urls, lease_seconds=LEASE) as a:
        async with running_router(db_urls, lease_seconds=LEASE) as b:
            await wait_for(lambda: _count(observer, b, SHARD_COUNT // 2), timeout=SETTLE)
            theirs = set(b.shards)
        # Stopped: nothing of b's is leased by b any more, not even until expiry.
        rows = {r["shard"]: r for r in await observer.shards()}
        assert not any(r["owner"] == b.id for r in rows.values())
        assert all(rows[s]["owner"] in (None, a.id) for s in theirs)
        assert (
            await observer.conn.fetchval("SELECT count(*) FROM router_workers WHERE id = $1", b.id)
            == 0
        )
        # ...and the one left takes them all on its next renewal.
        await wait_for(lambda: _count(observer, a, SHARD_COUNT), timeout=SETTLE)


async def test_a_silent_worker_loses_its_shards_only_when_its_lease_ends(db_urls, observer):
    async with (
        running_router(db_urls, lease_seconds=LEASE) as a,
        silent_worker(db_urls) as (v, v_conn, v_lease),
    ):
        await wait_for(lambda: _count(observer, v, SHARD_COUNT // 2), timeout=SETTLE)
        await wait_for(lambda: _count(observer, a, SHARD_COUNT // 2), timeout=SETTLE)
        v_lease.cancel()  # the crash: no more heartbeats, no leave
        with contextlib.suppress(asyncio.CancelledError):
            await v_lease
        rows = [r for r in await observer.shards() if r["owner"] == v.id]
        assert len(rows) == SHARD_COUNT // 2
        mine = {r["shard"]: r["epoch"] for r in rows}
        expiry = max(r["lease_expires_at"] for r in rows)

        # While its lease runs, nobody takes a shard from it.
        while True:
            now, still = await observer.conn.fetchrow(
                "SELECT now(), count(*) FILTER (WHERE owner = $1) FROM routing_shards", v.id
            )
            if (expiry - now).total_seconds() < 0.1:
                break
            assert still == len(mine), "a live lease was taken over"
            await asyncio.sleep(0.05)

        # Then the survivor claims them all, with new epochs.
        async def taken():
            rows = {r["shard"]: r for r in await observer.shards()}
            return rows if all(rows[s]["owner"] == a.id and rows[s]["live"] for s in mine) else None

        rows = await wait_for(taken, timeout=SETTLE)
        assert all(rows[s]["epoch"] > e for s, e in mine.items())
        await wait_for(lambda: _async(a.shards == set(range(SHARD_COUNT))), timeout=SETTLE)

        # Back from its pause, the silent worker finds it holds nothing, and its round
        # over the shards it still believes it has routes nothing.
        assert v.shards == set(mine)
        await v._balance(v_conn)
        assert v.shards == set()
        v.shards = set(mine)
        result = await v.round(v_conn)
        assert (result.tenants, result.offers) == (0, 0)


async def test_a_round_refuses_shards_whose_lease_expired(db_urls, observer, admin_conn):
    rigs = await provision(admin_conn, tenants=1, agents_per_tenant=1)
    async with silent_worker(db_urls) as (v, v_conn, v_lease):
        await wait_for(lambda: _count(observer, v, SHARD_COUNT), timeout=SETTLE)
        v_lease.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await v_lease
        async with Traffic(db_urls, rigs) as traffic:
            await traffic.go_available()
            await traffic.enqueue(rigs[0])

        async def expired():
            return not any(r["live"] for r in await observer.shards())

        await wait_for(expired, timeout=SETTLE)
        epochs = {r["shard"]: r["epoch"] for r in await observer.shards()}

        # It still believes it holds every shard, and the tenant has work due; but its
        # leases ran out, so the round does nothing.
        assert v.shards == set(range(SHARD_COUNT))
        result = await v.round(v_conn)
        assert (result.tenants, result.offers) == (0, 0)
        assert await observer.contact_states() == {"queued": 1}

        # Leased again (a new lease, so a new epoch, even for the same worker), it routes.
        await v._heartbeat(v_conn)
        await v._balance(v_conn)
        shard = rigs[0].shard
        assert shard in v.shards
        assert (await _epoch(observer, shard)) == epochs[shard] + 1
        result = await v.round(v_conn)
        assert result.offers == 1
        assert await observer.contact_states() == {"offered": 1}


# ---------------------------------------------------------------------------- helpers


async def _count(observer: Observer, router: Router, n: int) -> bool:
    return len(held_by(await observer.owners(), router)) == n and len(router.shards) == n


async def _epoch(observer: Observer, shard: int) -> int:
    return int(
        await observer.conn.fetchval("SELECT epoch FROM routing_shards WHERE shard = $1", shard)
    )


async def _async(value: bool) -> bool:
    return value
