"""The routing-profile and agent migrations: they match the models (written by hand),
force row-level security, and go down and up again."""

from __future__ import annotations

from tests.migration_check import check_migration

TABLES = (
    "routing_profiles",
    "routing_profile_queues",
    "agents",
    "agent_skills",
    "agent_invitations",
)
AGENTS, PROFILES, PARENT = "c3a000000005", "c3a000000004", "c3a000000003"


async def test_migrations_match_the_models_and_reverse(server_url, settings):
    await check_migration(server_url, settings, revision=AGENTS, parent=PARENT, tables=TABLES)
