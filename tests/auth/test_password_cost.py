"""The argon2 cost is a setting: production keeps RFC 9106's, tests run a cheap one, and
a hash made at any cost still logs in and is rehashed at the configured one."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.profiles import RFC_9106_LOW_MEMORY

from app.config import Settings
from tests.conftest import create_tenant, login


def test_production_cost_is_rfc_9106_low_memory():
    s = Settings()
    assert (s.argon2_time_cost, s.argon2_memory_cost, s.argon2_parallelism) == (
        RFC_9106_LOW_MEMORY.time_cost,
        RFC_9106_LOW_MEMORY.memory_cost,
        RFC_9106_LOW_MEMORY.parallelism,
    )


async def test_a_hash_made_at_another_cost_logs_in_and_is_rehashed(client, app, admin_conn):
    t = await create_tenant(client)
    settings = app.state.settings
    ours = f"m={settings.argon2_memory_cost},t={settings.argon2_time_cost},p="
    stored = "SELECT password_hash FROM users WHERE email = $1"
    assert ours in await admin_conn.fetchval(stored, t["email"])  # no rehash churn

    older = PasswordHasher(time_cost=2, memory_cost=16, parallelism=2).hash(t["password"])
    await admin_conn.execute(
        "UPDATE users SET password_hash = $1 WHERE email = $2", older, t["email"]
    )
    await login(client, t["email"])
    rehashed = await admin_conn.fetchval(stored, t["email"])
    assert rehashed != older and ours in rehashed
    await login(client, t["email"])
    assert await admin_conn.fetchval(stored, t["email"]) == rehashed
