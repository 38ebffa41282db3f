"""The conversations migration: its tables match the models, tenant tables force
row-level security (the abuse counters are a platform table), the customer audit trail
is append-only, and it goes down and up again."""

from __future__ import annotations

import asyncpg

from tests.migration_check import check_migration

TENANT_TABLES = (
    "customers",
    "customer_identities",
    "customer_consents",
    "customer_changes",
    "timeline_events",
    "conversations",
    "conversation_participants",
    "messages",
    "attachments",
    "conversation_events",
    "page_views",
    "proactive_rules",
    "proactive_decisions",
    "webhook_receipts",
)
PLATFORM_TABLES = ("abuse_counters", "outbound_work")
REVISION, PARENT = "c5a000000001", "c4a000000002"


async def _append_only(conn: asyncpg.Connection) -> None:
    trigger = await conn.fetchval(
        "SELECT count(*) FROM pg_trigger WHERE tgname = 'customer_changes_append_only'"
    )
    assert trigger == 1
    # Contacts learn which conversation they route.
    column = await conn.fetchval(
        "SELECT data_type FROM information_schema.columns "
        "WHERE table_name = 'contacts' AND column_name = 'conversation_id'"
    )
    assert column == "uuid"


async def test_migration_matches_the_models_and_reverses(server_url, settings):
    expected = {t: (True, True) for t in TENANT_TABLES} | {
        t: (False, False) for t in PLATFORM_TABLES
    }
    await check_migration(
        server_url,
        settings,
        revision=REVISION,
        parent=PARENT,
        tables=TENANT_TABLES + PLATFORM_TABLES,
        expected_security=expected,
        also=_append_only,
        # c5a000000002 (message templates) and c5a000000003 (attachment etag) add them.
        added_later=[("messages", "template"), ("attachments", "etag")],
    )
