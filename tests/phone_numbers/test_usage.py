"""Each held number records one phone-number day per day in the usage ledger."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx

from app.db.tenant import bind_tenant, mint_scope
from app.phone_numbers.metering import record_number_days
from tests.conftest import create_tenant

URL = "/v1/phone-numbers"


async def run_daily_job(app: Any, tenant: dict[str, Any], on_date: date) -> int:
    scope = mint_scope(uuid.UUID(tenant["tenant"]["id"]))
    async with app.state.session_factory() as session, session.begin():
        await bind_tenant(session, scope)
        return await record_number_days(session, scope, on_date)


async def ledger(admin_conn: Any) -> list[tuple[str, str, int]]:
    rows = await admin_conn.fetch(
        "SELECT idempotency_key, meter, quantity, attributes->>'number' AS number "
        "FROM usage_events ORDER BY idempotency_key"
    )
    return [
        (r["idempotency_key"], r["number"], int(r["quantity"]))
        for r in rows
        if r["meter"] == "phone_number_days"
    ]


async def test_a_claim_records_its_first_day(client: httpx.AsyncClient, admin_conn: Any) -> None:
    t = await create_tenant(client)
    r = await client.post(URL, json={"number": "+14155550177"}, headers=t["headers"])
    nid = r.json()["id"]
    today = datetime.now(UTC).date().isoformat()
    assert await ledger(admin_conn) == [(f"phone-number-day:{nid}:{today}", "+14155550177", 1)]
    # Claiming it again (already held) records nothing more.
    await client.post(URL, json={"number": "+14155550177"}, headers=t["headers"])
    assert len(await ledger(admin_conn)) == 1
    row = await admin_conn.fetchrow("SELECT tenant_id, meter FROM usage_events")
    assert row["tenant_id"] == uuid.UUID(t["tenant"]["id"]) and row["meter"] == "phone_number_days"


async def test_daily_job_records_each_held_number_once_per_day(
    client: httpx.AsyncClient, app: Any, admin_conn: Any
) -> None:
    a = await create_tenant(client)
    b = await create_tenant(client, company_name="Other Co")
    kept = (await client.post(URL, json={"number": "+14155550181"}, headers=a["headers"])).json()
    gone = (await client.post(URL, json={"number": "+14155550182"}, headers=a["headers"])).json()
    await client.post(URL, json={"number": "+14155550183"}, headers=b["headers"])
    today = datetime.now(UTC).date()
    tomorrow, yesterday = today + timedelta(days=1), today - timedelta(days=1)

    # Today's day is already in the ledger from the claims: nothing new.
    assert await run_daily_job(app, a, today) == 0
    # The day before the claims: nothing was held yet.
    assert await run_daily_job(app, a, yesterday) == 0

    # Released today: today still counts, tomorrow does not.
    assert (await client.delete(f"{URL}/{gone['id']}", headers=a["headers"])).status_code == 204
    assert await run_daily_job(app, a, today) == 0
    assert await run_daily_job(app, a, tomorrow) == 1
    assert await run_daily_job(app, a, tomorrow) == 0  # a second run records nothing

    keys = [k for k, _, _ in await ledger(admin_conn)]
    assert f"phone-number-day:{kept['id']}:{tomorrow.isoformat()}" in keys
    assert f"phone-number-day:{gone['id']}:{tomorrow.isoformat()}" not in keys
    # Tenant A's job never records tenant B's number.
    a_events = await admin_conn.fetchval(
        "SELECT count(*) FROM usage_events WHERE tenant_id = $1", uuid.UUID(a["tenant"]["id"])
    )
    assert a_events == 3  # two claim days and kept's day tomorrow
    b_events = await admin_conn.fetchval(
        "SELECT count(*) FROM usage_events WHERE tenant_id = $1", uuid.UUID(b["tenant"]["id"])
    )
    assert b_events == 1
