from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import pytest

from app.core.errors import Conflict, InvalidInput
from app.db.tenant import bind_tenant, mint_scope
from app.usage import service as usage
from tests.conftest import create_tenant

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


async def _record(app, tenant_id: str, key: str, qty: int | str = 1, meter: str = "messages"):
    scope = mint_scope(uuid.UUID(tenant_id))
    async with app.state.session_factory() as session, session.begin():
        await bind_tenant(session, scope)
        return await usage.record(
            session, scope, meter=meter, quantity=Decimal(qty), occurred_at=T0, idempotency_key=key
        )


async def test_record_is_idempotent_per_tenant(client, app, admin_conn):
    a = await create_tenant(client)
    b = await create_tenant(client)
    first = await _record(app, a["tenant"]["id"], "msg-1", 3)
    again = await _record(app, a["tenant"]["id"], "msg-1", 3)
    assert first.created and not again.created and again.event.id == first.event.id
    # The same key in another tenant is another event.
    other = await _record(app, b["tenant"]["id"], "msg-1", 3)
    assert other.created
    assert await admin_conn.fetchval("SELECT count(*) FROM usage_events") == 2


async def test_conflicting_replay_is_refused_not_dropped(client, app):
    a = await create_tenant(client)
    await _record(app, a["tenant"]["id"], "k", 3)
    with pytest.raises(Conflict):
        await _record(app, a["tenant"]["id"], "k", 4)


async def test_concurrent_replays_write_one_event(client, app, admin_conn):
    a = await create_tenant(client)
    results = await asyncio.gather(*[_record(app, a["tenant"]["id"], "race", 2) for _ in range(6)])
    assert sum(r.created for r in results) == 1
    assert await admin_conn.fetchval("SELECT count(*) FROM usage_events") == 1


async def test_bad_usage_is_refused(client, app):
    a = await create_tenant(client)
    for kwargs in ({"meter": "nope"}, {"qty": "-1"}, {"qty": "NaN"}):
        with pytest.raises(InvalidInput):
            await _record(
                app,
                a["tenant"]["id"],
                "bad",
                kwargs.get("qty", 1),
                meter=kwargs.get("meter", "messages"),
            )


async def test_usage_rides_in_the_business_transaction(client, app, admin_conn):
    a = await create_tenant(client)
    scope = mint_scope(uuid.UUID(a["tenant"]["id"]))
    with pytest.raises(RuntimeError):
        async with app.state.session_factory() as session, session.begin():
            await bind_tenant(session, scope)
            await usage.record(
                session,
                scope,
                meter="messages",
                quantity=1,
                occurred_at=T0,
                idempotency_key="rolled-back",
            )
            raise RuntimeError("the business change failed")
    assert await admin_conn.fetchval("SELECT count(*) FROM usage_events") == 0


async def test_usage_rows_are_tenant_isolated_for_the_runtime_role(client, app, app_conn):
    a = await create_tenant(client)
    b = await create_tenant(client)
    await _record(app, a["tenant"]["id"], "a1")
    async with app_conn.transaction():
        await app_conn.execute("SELECT set_config('app.tenant_id', $1, true)", b["tenant"]["id"])
        assert await app_conn.fetchval("SELECT count(*) FROM usage_events") == 0
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with app_conn.transaction():
            await app_conn.execute(
                "SELECT set_config('app.tenant_id', $1, true)", a["tenant"]["id"]
            )
            await app_conn.execute("UPDATE usage_events SET quantity = 0")
