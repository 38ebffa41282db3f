"""Routing workers as real OS processes: one is SIGKILLed under heavy traffic, another
joins a running pair. The guarantees of docs ARCHITECTURE (Routing) hold throughout:
no contact lost, never two live offers for one contact, no agent over capacity, and the
dead worker's shards are taken over once its lease runs out.

The scenario itself (tenants, traffic, the kill, the figures) is in
``tests/routing/traffic.py``; ``loadtests/router_kill.py`` runs it many times.
"""

from __future__ import annotations

import math
import time

import pytest

from app.routing.shards import SHARD_COUNT
from tests.routing.traffic import (
    Observer,
    RouterProcess,
    balanced,
    routers,
    run_kill_scenario,
    wait_until,
)

LEASE = 2.0
OFFER_TIMEOUT = 5.0
# Scheduling on a busy shared machine: the workers' timers may run late by this much.
SLACK = 2.0

pytestmark = pytest.mark.usefixtures("clean_db")


async def test_killing_a_router_under_traffic_loses_nothing(db_urls, admin_conn, tmp_path):
    fig = await run_kill_scenario(
        db_urls,
        admin_conn,
        tmp_path,
        tenants=30,
        agents_per_tenant=4,
        contacts_total=2000,
        lease_seconds=LEASE,
        offer_timeout_seconds=OFFER_TIMEOUT,
    )
    report = fig.as_dict()
    assert fig.errors == [], report

    # The kill hit a worker that was routing, with contacts of its shards still waiting.
    assert fig.dead_shards >= math.floor(SHARD_COUNT / 3), report
    assert fig.offers_by_victim > 0, report
    assert fig.details["waiting_in_dead_shards_at_kill"] > 0, report

    # (a) No contact lost: every contact enqueued was completed, exactly once; those of
    # the dead worker's shards that came in after the kill were routed by the others.
    assert fig.contacts == 2000, report
    assert fig.details["states"] == {"completed": 2000}, report
    assert fig.details["completed_per_contact_ok"] is True, report
    assert fig.dead_shard_contacts_after_kill > 0, report

    # (b) Never two live offers for one contact: no two reservations of a contact overlap
    # in time, none was seen in any sample, and the database refuses it anyway.
    assert fig.reoffers > 0, report  # rejected contacts were offered again
    assert fig.double_offers == 0, report
    assert fig.details["live_index"] is True, report

    # (c) No agent over capacity, and used points always matched the live work.
    assert fig.samples >= 20, report
    assert fig.capacity_violations == 0, report

    # (d) Takeover: not before the dead worker's leases ran out, and within a lease time
    # plus one renewal interval of the kill; every taken shard has a new epoch.
    assert fig.early_takeovers == 0, report
    assert fig.takeover_seconds <= LEASE + LEASE / 3 + SLACK, report
    assert fig.epochs_increased is True, report


async def test_a_third_router_gets_its_share_within_two_lease_periods(db_urls, tmp_path):
    fair = math.ceil(SHARD_COUNT / 3)
    async with Observer.connect(db_urls) as watch:
        with routers(db_urls, tmp_path, 2, lease_seconds=LEASE) as pair:
            await wait_until(
                lambda: _balanced(watch, pair), within=30, what="two routers share the shards"
            )
            third = RouterProcess(db_urls, tmp_path, lease_seconds=LEASE, name="third")
            try:
                # From the moment it has announced itself (its start-up time is not ours
                # to measure)...
                await wait_until(
                    lambda: _workers(watch, 3), within=30, interval=0.02, what="third joins"
                )
                joined = time.monotonic()
                await wait_until(
                    lambda: _balanced(watch, [*pair, third]),
                    within=10 * LEASE,
                    interval=0.02,
                    what="shards spread over three",
                )
                took = time.monotonic() - joined
                owners = await watch.owners()
                assert sorted(len(s) for s in owners.values()) == sorted(
                    [fair, fair, SHARD_COUNT - 2 * fair]
                ), owners
                assert took <= 2 * LEASE + SLACK, f"rebalancing took {took:.2f} s"
            finally:
                third.stop()


async def _balanced(watch: Observer, procs: list[RouterProcess]) -> bool:
    for p in procs:
        assert p.proc.poll() is None, f"router exited:\n{p.log_tail()}"
    return balanced(await watch.owners(), procs)


async def _workers(watch: Observer, n: int) -> bool:
    return int(await watch.conn.fetchval("SELECT count(*) FROM router_workers")) == n
