"""Business hours through the API, as a tenant would use them."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import create_tenant, create_user, login

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")
NY_HOURS: dict[str, Any] = {
    "name": "US support",
    "timezone": "America/New_York",
    "weekly": {d: [["09:00", "17:00"]] for d in WEEKDAYS} | {"sun": [["01:00", "03:00"]]},
    "exceptions": [
        {"date": "2026-12-25", "name": "Christmas Day", "closed": True},
        {"date": "2026-12-24", "name": "Christmas Eve", "open": [["09:00", "13:00"]]},
    ],
}


async def make_hours(client: httpx.AsyncClient, t: dict[str, Any], **over: Any) -> dict[str, Any]:
    r = await client.post("/v1/business-hours", json=NY_HOURS | over, headers=t["headers"])
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_create_read_update_delete_with_etags(client, admin_conn):
    t = await create_tenant(client)
    h = t["headers"]
    body = NY_HOURS | {"weekly": {"mon": [["13:00", "17:00"], ["09:00", "12:00"]]}}
    r = await client.post("/v1/business-hours", json=body, headers=h)
    assert r.status_code == 201 and r.headers["etag"] == '"1"'
    hours = r.json()
    # Every day is spelled out, intervals in order; exceptions sorted by date.
    assert hours["weekly"] == {
        "mon": [["09:00", "12:00"], ["13:00", "17:00"]],
        "tue": [],
        "wed": [],
        "thu": [],
        "fri": [],
        "sat": [],
        "sun": [],
    }
    assert [e["date"] for e in hours["exceptions"]] == ["2026-12-24", "2026-12-25"]
    assert hours["exceptions"][1] == {
        "date": "2026-12-25",
        "name": "Christmas Day",
        "closed": True,
        "open": [],
    }
    r = await client.get(f"/v1/business-hours/{hours['id']}", headers=h)
    assert r.json() == hours and r.headers["etag"] == '"1"'

    url = f"/v1/business-hours/{hours['id']}"
    r = await client.patch(
        url, json={"timezone": "Europe/London", "exceptions": []}, headers=h | {"If-Match": '"1"'}
    )
    assert r.status_code == 200 and r.headers["etag"] == '"2"'
    assert r.json()["timezone"] == "Europe/London" and r.json()["exceptions"] == []
    assert r.json()["weekly"] == hours["weekly"]
    # A stale ETag answers 412 and changes nothing.
    r = await client.patch(url, json={"name": "Stale"}, headers=h | {"If-Match": '"1"'})
    assert r.status_code == 412 and r.json()["current_etag"] == '"2"'
    assert (await client.get(url, headers=h)).json()["name"] == "US support"
    # Sending back what is stored (in any order) is no change: same version.
    r = await client.patch(
        url, json={"weekly": {"mon": [["13:00", "17:00"], ["09:00", "12:00"]]}}, headers=h
    )
    assert r.status_code == 200 and r.headers["etag"] == '"2"'
    # The read model is a valid write model (what "tenants as code" will send back).
    r = await client.patch(
        url,
        json={k: r.json()[k] for k in ("name", "timezone", "weekly", "exceptions")},
        headers=h,
    )
    assert r.status_code == 200 and r.headers["etag"] == '"2"'

    assert (await client.delete(url, headers=h | {"If-Match": '"1"'})).status_code == 412
    assert (await client.delete(url, headers=h | {"If-Match": '"2"'})).status_code == 204
    assert (await client.get(url, headers=h)).status_code == 404
    actions = [
        r["action"]
        for r in await admin_conn.fetch(
            "SELECT action FROM audit_events WHERE target_type = 'business_hours' "
            "ORDER BY occurred_at"
        )
    ]
    assert actions[0] == "business_hours.create" and actions[-1] == "business_hours.delete"
    assert "business_hours.update" in actions


STATUS_CASES = [
    # Spring forward, Sun 8 Mar 2026: 01:00 EST to 03:00 EDT is one real hour.
    (
        "2026-03-08T01:30:00-05:00",
        {"open": True, "until": "2026-03-08T07:00:00Z", "local": "2026-03-08T01:30:00-05:00"},
    ),
    (
        "2026-03-08T07:00:00Z",
        {"open": False, "until": "2026-03-09T13:00:00Z", "local": "2026-03-08T03:00:00-04:00"},
    ),
    # Fall back, Sun 1 Nov 2026: open through the repeated hour until 03:00 EST.
    (
        "2026-11-01T06:30:00Z",
        {"open": True, "until": "2026-11-01T08:00:00Z", "local": "2026-11-01T01:30:00-05:00"},
    ),
    # Christmas Eve closes early; Christmas is closed; Saturday and Sunday the
    # 27th 01:00-03:00 (weekly) come next.
    (
        "2026-12-24T12:00:00-05:00",
        {"open": True, "until": "2026-12-24T18:00:00Z", "local": "2026-12-24T12:00:00-05:00"},
    ),
    (
        "2026-12-25T10:00:00-05:00",
        {"open": False, "until": "2026-12-27T06:00:00Z", "local": "2026-12-25T10:00:00-05:00"},
    ),
]


async def test_status_answers_open_and_until_across_dst(client):
    t = await create_tenant(client)
    hours = await make_hours(client, t)
    for at, expected in STATUS_CASES:
        r = await client.get(
            f"/v1/business-hours/{hours['id']}/status", params={"at": at}, headers=t["headers"]
        )
        assert r.status_code == 200, r.text
        assert r.json() == {
            "open": expected["open"],
            "until": expected["until"],
            "timezone": "America/New_York",
            "local_time": expected["local"],
        }, at


async def test_status_defaults_to_now_and_refuses_a_time_without_offset(client):
    t = await create_tenant(client)
    always = await make_hours(
        client,
        t,
        name="Always",
        timezone="UTC",
        weekly={d: [["00:00", "24:00"]] for d in (*WEEKDAYS, "sat", "sun")},
        exceptions=[],
    )
    url = f"/v1/business-hours/{always['id']}/status"
    r = await client.get(url, headers=t["headers"])
    assert r.status_code == 200
    assert r.json()["open"] is True and r.json()["until"] is None
    for bad in ("2026-03-08T01:30:00", "yesterday", "2026-13-01T00:00:00Z", "0001-01-01T00:00:00Z"):
        r = await client.get(url, params={"at": bad}, headers=t["headers"])
        assert r.status_code == 422, bad
        assert r.json()["field"] == "query.at"


def _week(**days: Any) -> dict[str, Any]:
    return {"name": "x", "timezone": "UTC", "weekly": days}


BAD_CREATES = [
    ({"name": "x", "timezone": "Mars/Olympus", "weekly": {}}, "body.timezone"),
    ({"name": "x", "timezone": "america/new_york", "weekly": {}}, "body.timezone"),
    ({"name": "x", "timezone": "", "weekly": {}}, "body.timezone"),
    ({"name": "x", "timezone": "UTC"}, "body.weekly"),
    ({"name": " ", "timezone": "UTC", "weekly": {}}, "body.name"),
    ({"timezone": "UTC", "weekly": {}}, "body.name"),
    (_week(monday=[["09:00", "17:00"]]), "body.weekly.monday"),
    (_week(mon="09:00-17:00"), "body.weekly.mon"),
    (_week(mon=[["9:00", "17:00"]]), "body.weekly.mon.0.0"),
    (_week(mon=[["09:00", "24:30"]]), "body.weekly.mon.0.1"),
    (_week(mon=[["24:00", "24:00"]]), "body.weekly.mon.0.0"),
    (_week(mon=[["17:00", "09:00"]]), "body.weekly.mon.0"),
    (_week(mon=[["09:00", "09:00"]]), "body.weekly.mon.0"),
    (_week(mon=[["09:00"]]), "body.weekly.mon.0.1"),
    (_week(mon=[["09:00", "12:00", "13:00"]]), "body.weekly.mon.0"),
    (_week(tue=[["09:00", "12:00"], ["13:00", "17:00"], ["11:00", "14:00"]]), "body.weekly.tue.2"),
    (_week(fri=[["00:00", "24:00"], ["00:00", "24:00"]]), "body.weekly.fri.1"),
    (
        _week() | {"exceptions": [{"date": "2026-12-25", "closed": True}] * 2},
        "body.exceptions.1.date",
    ),
    (_week() | {"exceptions": [{"date": "2026-02-30", "closed": True}]}, "body.exceptions.0.date"),
    (
        _week()
        | {"exceptions": [{"date": "2026-12-25", "closed": True, "open": [["09:00", "10:00"]]}]},
        "body.exceptions.0.open",
    ),
    (_week() | {"exceptions": [{"date": "2026-12-25"}]}, "body.exceptions.0.open"),
    (
        _week() | {"exceptions": [{"date": "2026-12-25", "open": [["10:00", "09:00"]]}]},
        "body.exceptions.0.open.0",
    ),
    (
        _week() | {"exceptions": [{"date": "2026-12-25", "closed": True, "when": 1}]},
        "body.exceptions.0.when",
    ),
    (_week() | {"exceptions": [{"closed": True}]}, "body.exceptions.0.date"),
    (_week() | {"extra": True}, "body.extra"),
]


async def test_bad_input_names_the_field_and_creates_nothing(client, admin_conn):
    t = await create_tenant(client)
    for body, field in BAD_CREATES:
        r = await client.post("/v1/business-hours", json=body, headers=t["headers"])
        assert r.status_code == 422, (body, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["field"] == field, (body, r.json())
    assert await admin_conn.fetchval("SELECT count(*) FROM business_hours") == 0


BAD_UPDATES = [
    ({"timezone": None}, "body.timezone"),
    ({"weekly": None}, "body.weekly"),
    ({"name": None}, "body.name"),
    ({"timezone": "Nowhere/Special"}, "body.timezone"),
    ({"weekly": {"tue": [["10:00", "09:00"]]}}, "body.weekly.tue.0"),
    ({"exceptions": [{"date": "2027-01-01", "closed": False}]}, "body.exceptions.0.open"),
]


async def test_bad_updates_name_the_field_and_change_nothing(client):
    t = await create_tenant(client)
    hours = await make_hours(client, t)
    url = f"/v1/business-hours/{hours['id']}"
    for patch, field in BAD_UPDATES:
        r = await client.patch(url, json=patch, headers=t["headers"])
        assert r.status_code == 422 and r.json()["field"] == field, (patch, r.text)
    after = await client.get(url, headers=t["headers"])
    assert after.json() == hours and after.headers["etag"] == '"1"'


async def test_names_are_unique_per_tenant_and_tenants_are_isolated(client):
    a = await create_tenant(client)
    b = await create_tenant(client)
    mine = await make_hours(client, a)
    r = await client.post(
        "/v1/business-hours", json=NY_HOURS | {"name": " us SUPPORT "}, headers=a["headers"]
    )
    assert r.status_code == 409 and r.json()["code"] == "business-hours-name-taken"
    assert r.json()["field"] == "body.name"
    other = await make_hours(client, a, name="EU support", timezone="Europe/London")
    r = await client.patch(
        f"/v1/business-hours/{other['id']}", json={"name": "US Support"}, headers=a["headers"]
    )
    assert r.status_code == 409 and r.json()["code"] == "business-hours-name-taken"

    # Tenant B may use the same name, sees only its own, and cannot reach A's.
    theirs = await make_hours(client, b)
    assert theirs["id"] != mine["id"]
    listed = (await client.get("/v1/business-hours", headers=b["headers"])).json()["items"]
    assert [h["id"] for h in listed] == [theirs["id"]]
    url = f"/v1/business-hours/{mine['id']}"
    for method, path, body in (
        ("GET", url, None),
        ("GET", url + "/status", None),
        ("PATCH", url, {"name": "Hijacked"}),
        ("DELETE", url, None),
    ):
        r = await client.request(method, path, json=body, headers=b["headers"])
        assert r.status_code == 404, (method, path)
        assert r.json()["code"] == "business-hours-not-found"
    assert (await client.get(url, headers=a["headers"])).json()["name"] == "US support"


async def test_idempotency_key_replays_the_first_answer(client, admin_conn):
    t = await create_tenant(client)
    h = t["headers"] | {"Idempotency-Key": "hours-1"}
    first = await client.post("/v1/business-hours", json=NY_HOURS, headers=h)
    again = await client.post("/v1/business-hours", json=NY_HOURS, headers=h)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert await admin_conn.fetchval("SELECT count(*) FROM business_hours") == 1


async def test_hours_a_queue_uses_cannot_be_deleted(client, admin_conn):
    t = await create_tenant(client)
    h = t["headers"]
    hours = await make_hours(client, t)
    r = await client.post(
        "/v1/queues",
        json={"name": "Billing", "channels": ["voice"], "business_hours_id": hours["id"]},
        headers=h,
    )
    assert r.status_code == 201, r.text
    queue = r.json()
    r = await client.delete(f"/v1/business-hours/{hours['id']}", headers=h)
    assert r.status_code == 409 and r.json()["code"] == "business-hours-in-use"
    assert r.json()["used_by"] == [{"type": "queue", "id": queue["id"], "name": "Billing"}]
    assert await admin_conn.fetchval("SELECT count(*) FROM business_hours") == 1
    # Point the queue elsewhere (always open), then the hours can go.
    r = await client.patch(f"/v1/queues/{queue['id']}", json={"business_hours_id": None}, headers=h)
    assert r.status_code == 200 and r.json()["business_hours_id"] is None
    assert (await client.delete(f"/v1/business-hours/{hours['id']}", headers=h)).status_code == 204


async def test_lists_are_cursor_paginated_newest_first(client):
    t = await create_tenant(client)
    made = [await make_hours(client, t, name=f"Hours {i}") for i in range(3)]
    r = await client.get("/v1/business-hours", params={"limit": 2}, headers=t["headers"])
    page1 = r.json()
    assert [h["name"] for h in page1["items"]] == ["Hours 2", "Hours 1"]
    r = await client.get(
        "/v1/business-hours",
        params={"limit": 2, "cursor": page1["next_cursor"]},
        headers=t["headers"],
    )
    assert [h["id"] for h in r.json()["items"]] == [made[0]["id"]]
    assert r.json()["next_cursor"] is None


async def test_supervisors_read_but_do_not_write(client, app):
    t = await create_tenant(client)
    hours = await make_hours(client, t)
    sup = await create_user(app, t, "supervisor")
    sh = (await login(client, sup["email"]))["headers"]
    assert (
        await client.get(f"/v1/business-hours/{hours['id']}/status", headers=sh)
    ).status_code == 200
    r = await client.post("/v1/business-hours", json=NY_HOURS | {"name": "x"}, headers=sh)
    assert r.status_code == 403 and r.json()["required_scope"] == "business_hours:write"
