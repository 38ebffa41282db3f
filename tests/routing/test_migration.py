"""The routing migration: tables match the models, tenant tables force row-level
security, the platform tables do not carry it, the shard rows are seeded, and it goes
down (dropping the routing workers' policies and functions) and up again."""

from __future__ import annotations

import asyncpg

from app.routing.shards import SHARD_COUNT
from tests.migration_check import check_migration

TENANT_TABLES = ("contacts", "agent_presence", "reservations", "routing_events", "outbox_events")
PLATFORM_TABLES = ("routing_shards", "router_workers", "routing_work")
ROUTING, PARENT = "c4a000000001", "c3a000000008"


async def _seeded(conn: asyncpg.Connection) -> None:
    assert await conn.fetchval("SELECT count(*) FROM routing_shards") == SHARD_COUNT
    policies = await conn.fetchval("SELECT count(*) FROM pg_policy WHERE polname = 'router_shards'")
    # 5 routing tables + 7 configuration tables the workers read.
    assert policies == 12


async def test_migration_matches_the_models_and_reverses(server_url, settings):
    expected = {t: (True, True) for t in TENANT_TABLES} | {
        t: (False, False) for t in PLATFORM_TABLES
    }
    await check_migration(
        server_url,
        settings,
        revision=ROUTING,
        parent=PARENT,
        tables=TENANT_TABLES + PLATFORM_TABLES,
        expected_security=expected,
        also=_seeded,
        added_later=[
            ("contacts", "conversation_id"),
            ("contacts", "ix_contacts_tenant_id_customer_ref_enqueued_at"),
        ],
    )
