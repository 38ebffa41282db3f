"""The SSO migration: matches the models, row-level security forced, and reversible."""

from __future__ import annotations

import asyncpg

from app.config import Settings
from tests.migration_check import check_migration

TABLES = ("sso_oidc_configs", "sso_login_states")
REVISION, PARENT = "b1c0551d0001", "a535855066e1"


async def test_upgrade_matches_models_and_downgrade_reverses(server_url, settings: Settings):
    async def policies_and_owner(conn: asyncpg.Connection) -> None:
        policies = await conn.fetchval(
            "SELECT count(*) FROM pg_policies WHERE tablename = ANY($1::text[])", list(TABLES)
        )
        assert policies == len(TABLES)
        owner = await conn.fetchval(
            "SELECT tableowner FROM pg_tables WHERE tablename = 'sso_oidc_configs'"
        )
        assert owner == settings.owner_role

    await check_migration(
        server_url,
        settings,
        revision=REVISION,
        parent=PARENT,
        tables=TABLES,
        also=policies_and_owner,
    )
