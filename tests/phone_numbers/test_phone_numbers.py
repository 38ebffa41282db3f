"""Phone numbers through the API, with the sandbox carrier (the default)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.conftest import create_tenant, create_user, login
from tests.phone_numbers.conftest import MakeFlow

URL = "/v1/phone-numbers"
SF = "+14155550123"


async def claim(
    client: httpx.AsyncClient, tenant: dict[str, Any], number: str = SF, **extra: Any
) -> httpx.Response:
    return await client.post(URL, json={"number": number, **extra}, headers=tenant["headers"])


async def counts(admin_conn: Any) -> dict[str, int]:
    return {
        "phone_numbers": await admin_conn.fetchval("SELECT count(*) FROM phone_numbers"),
        "held": await admin_conn.fetchval(
            "SELECT count(*) FROM number_claims WHERE tenant_id IS NOT NULL"
        ),
        "usage": await admin_conn.fetchval("SELECT count(*) FROM usage_events"),
    }


async def test_claim_point_release_and_cool_down(
    client: httpx.AsyncClient, admin_conn: Any, make_flow: MakeFlow
) -> None:
    a = await create_tenant(client)
    b = await create_tenant(client, company_name="Other Co")
    ha = a["headers"]

    # A new user searches, then claims what the search offered.
    r = await client.get(
        f"{URL}/available", params={"country": "US", "area_code": "415", "limit": 50}, headers=ha
    )
    assert r.status_code == 200, r.text
    offered = r.json()["items"]
    assert r.json()["carrier"] == "sandbox" and SF in [n["number"] for n in offered]
    first = offered[0]
    assert first["locality"] == "San Francisco, CA"
    assert first["capabilities"] == {"voice": True, "sms": True}
    assert first["monthly_price"] == {"amount_minor": 115, "currency": "USD"}

    r = await claim(client, a)
    assert r.status_code == 201, r.text
    assert r.headers["etag"] == '"1"'
    number = r.json()
    assert number["number"] == SF and number["status"] == "active"
    assert (number["country"], number["type"], number["carrier"]) == ("US", "local", "sandbox")
    assert number["flow_id"] is None and number["released_at"] is None
    nid = number["id"]

    # Listed, readable, and no longer offered to anyone.
    assert [n["id"] for n in (await client.get(URL, headers=ha)).json()["items"]] == [nid]
    r = await client.get(f"{URL}/{nid}", headers=ha)
    assert r.status_code == 200 and r.json() == number and r.headers["etag"] == '"1"'
    for t in (a, b):
        r = await client.get(
            f"{URL}/available",
            params={"country": "US", "area_code": "415", "contains": "0123"},
            headers=t["headers"],
        )
        assert r.json()["items"] == []

    # Claiming it again is harmless: the same number, unchanged.
    r = await claim(client, a)
    assert r.status_code == 200 and r.json() == number

    # Point it at a contact flow (If-Match guards against lost updates).
    flow_id = await make_flow(a)
    r = await client.patch(
        f"{URL}/{nid}", json={"flow_id": flow_id}, headers=ha | {"If-Match": '"1"'}
    )
    assert r.status_code == 200, r.text
    assert r.json()["flow_id"] == flow_id and r.headers["etag"] == '"2"'
    r = await client.patch(f"{URL}/{nid}", json={"flow_id": None}, headers=ha | {"If-Match": '"1"'})
    assert r.status_code == 412 and r.json()["code"] == "precondition-failed"
    assert (await client.get(f"{URL}/{nid}", headers=ha)).json()["flow_id"] == flow_id
    # The same flow again changes nothing (same version).
    r = await client.patch(f"{URL}/{nid}", json={"flow_id": flow_id}, headers=ha)
    assert r.status_code == 200 and r.headers["etag"] == '"2"'

    # Release it: stale If-Match first.
    r = await client.delete(f"{URL}/{nid}", headers=ha | {"If-Match": '"1"'})
    assert r.status_code == 412
    assert (await client.get(f"{URL}/{nid}", headers=ha)).json()["status"] == "active"
    r = await client.delete(f"{URL}/{nid}", headers=ha | {"If-Match": '"2"'})
    assert r.status_code == 204
    released = (await client.get(f"{URL}/{nid}", headers=ha)).json()
    assert released["status"] == "released" and released["released_at"] is not None
    assert released["flow_id"] is None  # a released number does not keep a flow in use
    # Releasing again changes nothing.
    assert (await client.delete(f"{URL}/{nid}", headers=ha)).status_code == 204
    assert (await client.get(f"{URL}/{nid}", headers=ha)).json()["version"] == released["version"]
    # It can no longer be pointed anywhere.
    r = await client.patch(f"{URL}/{nid}", json={"flow_id": flow_id}, headers=ha)
    assert r.status_code == 409 and r.json()["code"] == "phone-number-released"

    # Still listed, under status=released.
    r = await client.get(URL, params={"status": "released"}, headers=ha)
    assert [n["id"] for n in r.json()["items"]] == [nid]
    assert (await client.get(URL, params={"status": "active"}, headers=ha)).json()["items"] == []

    # Cooling down: nobody can claim it, not even its last holder, and no search offers it.
    available_after = await admin_conn.fetchval(
        "SELECT available_after FROM number_claims WHERE e164 = $1", SF
    )
    expected = datetime.now(UTC) + timedelta(days=30)
    assert abs(available_after - expected) < timedelta(minutes=1)
    for t in (a, b):
        r = await claim(client, t)
        assert r.status_code == 409, r.text
        assert r.json()["code"] == "number-unavailable" and r.json()["field"] == "body.number"
    r = await client.get(
        f"{URL}/available", params={"country": "US", "contains": "4155550123"}, headers=ha
    )
    assert r.json()["items"] == []

    # Once the cool-down has passed, anyone may claim it.
    await admin_conn.execute(
        "UPDATE number_claims SET available_after = now() - interval '1 second' WHERE e164 = $1",
        SF,
    )
    r = await client.get(
        f"{URL}/available", params={"country": "US", "contains": "4155550123"}, headers=ha
    )
    assert [n["number"] for n in r.json()["items"]] == [SF]
    r = await claim(client, b)
    assert r.status_code == 201, r.text
    assert r.json()["id"] != nid
    assert await admin_conn.fetchval(
        "SELECT tenant_id FROM number_claims WHERE e164 = $1", SF
    ) == uuid.UUID(b["tenant"]["id"])
    # The first tenant keeps its history; the second sees only its own number.
    assert len((await client.get(URL, headers=ha)).json()["items"]) == 1
    assert [n["id"] for n in (await client.get(URL, headers=b["headers"])).json()["items"]] == [
        r.json()["id"]
    ]


async def test_tenants_racing_for_one_number_get_one_winner(
    client: httpx.AsyncClient, admin_conn: Any
) -> None:
    tenants = [await create_tenant(client, company_name=f"Racer {i}") for i in range(4)]
    rs = await asyncio.gather(*[claim(client, t, "+12125550142") for t in tenants])
    assert sorted(r.status_code for r in rs) == [201, 409, 409, 409], [r.text for r in rs]
    winner = tenants[[r.status_code for r in rs].index(201)]
    assert await admin_conn.fetchval("SELECT count(*) FROM phone_numbers") == 1
    assert await admin_conn.fetchval(
        "SELECT tenant_id FROM number_claims WHERE e164 = '+12125550142'"
    ) == uuid.UUID(winner["tenant"]["id"])
    for r in rs:
        if r.status_code == 409:  # the loser learns nothing about the winner
            assert winner["tenant"]["id"] not in r.text
            assert r.json()["code"] == "number-unavailable"


async def test_one_tenant_retrying_a_claim_concurrently_holds_it_once(
    client: httpx.AsyncClient, admin_conn: Any
) -> None:
    t = await create_tenant(client)
    rs = await asyncio.gather(*[claim(client, t, "+13125550111") for _ in range(3)])
    assert sorted(r.status_code for r in rs) == [200, 200, 201]
    assert len({r.json()["id"] for r in rs}) == 1
    assert (await counts(admin_conn))["phone_numbers"] == 1


async def test_another_tenants_number_is_not_found(
    client: httpx.AsyncClient, make_flow: MakeFlow
) -> None:
    a = await create_tenant(client)
    b = await create_tenant(client, company_name="Snoop Co")
    nid = (await claim(client, a)).json()["id"]
    b_flow = await make_flow(b)
    for method, body in (("GET", None), ("PATCH", {"flow_id": b_flow}), ("DELETE", None)):
        r = await client.request(method, f"{URL}/{nid}", json=body, headers=b["headers"])
        assert r.status_code == 404, (method, r.text)
        assert r.json()["code"] == "phone-number-not-found"
    assert (await client.get(URL, headers=b["headers"])).json()["items"] == []
    # A's number is untouched, and A cannot point it at B's flow either.
    r = await client.patch(f"{URL}/{nid}", json={"flow_id": b_flow}, headers=a["headers"])
    assert r.status_code == 422 and r.json()["field"] == "body.flow_id"
    r = await client.get(f"{URL}/{nid}", headers=a["headers"])
    assert r.json()["status"] == "active" and r.json()["flow_id"] is None


async def test_row_level_security_hides_another_tenants_numbers(
    client: httpx.AsyncClient, app_conn: Any
) -> None:
    a = await create_tenant(client)
    b = await create_tenant(client, company_name="Other Co")
    assert (await claim(client, a)).status_code == 201
    async with app_conn.transaction():  # as the runtime role, bound to tenant B
        await app_conn.execute("SELECT set_config('app.tenant_id', $1, true)", b["tenant"]["id"])
        assert await app_conn.fetchval("SELECT count(*) FROM phone_numbers") == 0
        assert await app_conn.execute("UPDATE phone_numbers SET status = 'released'") == "UPDATE 0"
    async with app_conn.transaction():
        await app_conn.execute("SELECT set_config('app.tenant_id', $1, true)", a["tenant"]["id"])
        assert await app_conn.fetchval("SELECT status FROM phone_numbers") == "active"


async def test_quota_refuses_the_third_number_on_trial(
    client: httpx.AsyncClient, admin_conn: Any
) -> None:
    t = await create_tenant(client)
    first = await claim(client, t, "+14155550101")
    assert first.status_code == 201
    assert (await claim(client, t, "+14155550102")).status_code == 201
    before = await counts(admin_conn)
    r = await claim(client, t, "+14155550103")
    assert r.status_code == 403, r.text
    body = r.json()
    assert body["code"] == "quota-exceeded" and (body["limit"], body["current"]) == (2, 2)
    assert await counts(admin_conn) == before
    assert (
        await admin_conn.fetchval("SELECT count(*) FROM number_claims WHERE e164 = '+14155550103'")
        == 0
    )
    quotas = (await client.get("/v1/quotas", headers=t["headers"])).json()["quotas"]
    assert {q["resource"]: q["used"] for q in quotas}["phone_numbers"] == 2
    # Already-held numbers still answer 200 at the limit; a release makes room.
    assert (await claim(client, t, "+14155550101")).status_code == 200
    nid = first.json()["id"]
    assert (await client.delete(f"{URL}/{nid}", headers=t["headers"])).status_code == 204
    assert (await claim(client, t, "+14155550103")).status_code == 201


async def test_idempotency_key_replays_the_first_answer(
    client: httpx.AsyncClient, admin_conn: Any
) -> None:
    t = await create_tenant(client)
    h = t["headers"] | {"Idempotency-Key": "claim-sf-1"}
    first = await client.post(URL, json={"number": SF}, headers=h)
    again = await client.post(URL, json={"number": SF}, headers=h)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    r = await client.post(URL, json={"number": "+14155550124"}, headers=h)
    assert r.status_code == 422 and r.json()["code"] == "idempotency-key-reused"
    assert (await counts(admin_conn))["phone_numbers"] == 1


async def test_bad_input_names_the_field_and_changes_nothing(
    client: httpx.AsyncClient, admin_conn: Any, make_flow: MakeFlow
) -> None:
    t = await create_tenant(client)
    other = await create_tenant(client, company_name="Other Co")
    foreign_flow = await make_flow(other)
    h = t["headers"]
    for body, field, code in (
        ({}, "body.number", "validation-failed"),
        ({"number": ""}, "body.number", "validation-failed"),
        ({"number": "4155550123"}, "body.number", "validation-failed"),
        ({"number": "+1 415 555 0123"}, "body.number", "validation-failed"),
        ({"number": "+1-415-555-0123"}, "body.number", "validation-failed"),
        ({"number": "+1 (415) 5550123"}, "body.number", "validation-failed"),
        ({"number": "+14155550123 "}, "body.number", "validation-failed"),
        ({"number": "00 44 20 7946 0123"}, "body.number", "validation-failed"),
        ({"number": "+4402079460123"}, "body.number", "validation-failed"),  # trunk zero
        ({"number": "+1415555012"}, "body.number", "validation-failed"),  # too short
        ({"number": "+141555501234"}, "body.number", "validation-failed"),  # too long
        ({"number": "+12115550123"}, "body.number", "validation-failed"),  # no such NPA
        ({"number": "+9991234567"}, "body.number", "validation-failed"),  # no such country
        ({"number": "+1415555012\uff13"}, "body.number", "validation-failed"),  # full-width digit
        ({"number": "+1" + "4" * 20}, "body.number", "validation-failed"),
        ({"number": 14155550123}, "body.number", "validation-failed"),
        ({"number": None}, "body.number", "validation-failed"),
        ({"number": ["+14155550123"]}, "body.number", "validation-failed"),
        ({"number": SF, "flow_id": "not-a-uuid"}, "body.flow_id", "validation-failed"),
        ({"number": SF, "flow_id": 7}, "body.flow_id", "validation-failed"),
        ({"number": SF, "flow_id": str(uuid.uuid4())}, "body.flow_id", "flow-not-found"),
        ({"number": SF, "flow_id": foreign_flow}, "body.flow_id", "flow-not-found"),
        ({"number": SF, "carrier": "twilio"}, "body.carrier", "validation-failed"),
        # Real numbers: well formed, but the sandbox only offers fictional ones.
        ({"number": "+14155552671"}, "body.number", "number-not-offered"),
        ({"number": "+442071838750"}, "body.number", "number-not-offered"),
    ):
        r = await client.post(URL, json=body, headers=h)
        assert r.status_code == 422, (body, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert (r.json()["field"], r.json()["code"]) == (field, code), (body, r.text)
    r = await client.post(URL, json={"number": SF}, headers=h | {"Idempotency-Key": "a b"})
    assert r.status_code == 422 and r.json()["field"] == "header.Idempotency-Key"
    r = await client.post(URL, content=b"+14155550123", headers=h | {"content-type": "text/plain"})
    assert r.status_code == 415
    r = await client.post(
        URL, content=b'{"number": ', headers=h | {"content-type": "application/json"}
    )
    assert r.status_code == 422 and r.json()["field"] == "body"
    # The canonical-form error says how to write it.
    r = await client.post(URL, json={"number": "+4402079460123"}, headers=h)
    assert "+442079460123" in r.json()["detail"]

    nid = (await claim(client, t)).json()["id"]
    before = await counts(admin_conn)
    for body, field in (
        ({"flow_id": "x"}, "body.flow_id"),
        ({"flow_id": str(uuid.uuid4())}, "body.flow_id"),
        ({"number": "+14155550124"}, "body.number"),
        ({"status": "released"}, "body.status"),
    ):
        r = await client.patch(f"{URL}/{nid}", json=body, headers=h)
        assert r.status_code == 422 and r.json()["field"] == field, (body, r.text)
    r = await client.patch(f"{URL}/{nid}", json={}, headers=h | {"If-Match": "x" * 201})
    assert r.status_code == 422 and r.json()["field"] == "header.If-Match"
    for method in ("PATCH", "DELETE"):  # a search, not a number
        r = await client.request(method, f"{URL}/available", headers=h)
        assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"
    for path in ("/not-a-uuid", "/123"):
        r = await client.get(URL + path, headers=h)
        assert r.status_code == 422 and r.json()["field"] == "path.phone_number_id"
    for params, field in (
        ({"status": "gone"}, "query.status"),
        ({"country": "usa"}, "query.country"),
        ({"cursor": "!!"}, "query.cursor"),
        ({"limit": 0}, "query.limit"),
    ):
        r = await client.get(URL, params=params, headers=h)
        assert r.status_code == 422 and r.json()["field"] == field, (params, r.text)
    for params, field in (
        ({}, "query.country"),
        ({"country": "us"}, "query.country"),
        ({"country": "ZZ"}, "query.country"),
        ({"country": "US", "type": "fax"}, "query.type"),
        ({"country": "US", "area_code": "41"}, "query.area_code"),
        ({"country": "US", "area_code": "141"}, "query.area_code"),
        ({"country": "US", "area_code": "4a5"}, "query.area_code"),
        ({"country": "US", "contains": "5"}, "query.contains"),
        ({"country": "US", "contains": "abc*"}, "query.contains"),
        ({"country": "US", "limit": 51}, "query.limit"),
        ({"country": "US", "limit": "many"}, "query.limit"),
    ):
        r = await client.get(f"{URL}/available", params=params, headers=h)
        assert r.status_code == 422 and r.json()["field"] == field, (params, r.text)
    r = await client.get(f"{URL}/{nid}", headers=h)
    assert r.json()["version"] == 1 and r.json()["flow_id"] is None
    assert await counts(admin_conn) == before


async def test_scopes(client: httpx.AsyncClient, app: Any) -> None:
    t = await create_tenant(client)
    sup = await login(client, (await create_user(app, t, "supervisor"))["email"])
    agent = await login(client, (await create_user(app, t, "agent"))["email"])
    assert (await client.get(URL, headers=sup["headers"])).status_code == 200
    r = await client.get(f"{URL}/available", params={"country": "GB"}, headers=sup["headers"])
    assert r.status_code == 200
    r = await client.post(URL, json={"number": SF}, headers=sup["headers"])
    assert r.status_code == 403 and r.json()["required_scope"] == "phone_numbers:write"
    assert (await client.get(URL, headers=agent["headers"])).status_code == 403
    assert (await client.get(URL)).status_code == 401


async def test_list_filters_and_pages(client: httpx.AsyncClient, app: Any, admin_conn: Any) -> None:
    t = await create_tenant(client)
    await admin_conn.execute(
        "UPDATE tenants SET plan = 'growth' WHERE id = $1", uuid.UUID(t["tenant"]["id"])
    )
    numbers = ["+14155550150", "+442079460150", "+447700900150", "+12125550150"]
    for n in numbers:
        assert (await claim(client, t, n)).status_code == 201
    gb = (await client.get(URL, params={"country": "GB"}, headers=t["headers"])).json()["items"]
    assert {(n["number"], n["type"]) for n in gb} == {
        ("+442079460150", "local"),
        ("+447700900150", "mobile"),
    }
    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = (await client.get(URL, params=params, headers=t["headers"])).json()
        seen += [n["number"] for n in page["items"]]
        if not (cursor := page["next_cursor"]):
            break
    assert seen == list(reversed(numbers))  # newest first, each once


async def test_audit_names_each_change(client: httpx.AsyncClient, admin_conn: Any) -> None:
    t = await create_tenant(client)
    nid = (await claim(client, t)).json()["id"]
    await client.delete(f"{URL}/{nid}", headers=t["headers"])
    rows = await admin_conn.fetch(
        "SELECT action, target_id FROM audit_events WHERE target_type = 'phone_number' "
        "ORDER BY occurred_at"
    )
    assert [(r["action"], r["target_id"]) for r in rows] == [
        ("phone_number.claim", nid),
        ("phone_number.release", nid),
    ]


async def test_openapi_documents_every_answer_with_examples(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    expected = {
        ("get", URL + "/available"): {"200", "401", "403", "422", "502"},
        ("post", URL): {"200", "201", "401", "403", "409", "422", "502"},
        ("get", URL): {"200", "401", "403", "422"},
        ("get", URL + "/{phone_number_id}"): {"200", "401", "403", "404", "422"},
        ("patch", URL + "/{phone_number_id}"): {"200", "401", "403", "404", "409", "412", "422"},
        ("delete", URL + "/{phone_number_id}"): {"204", "401", "403", "404", "412", "502"},
    }
    for (method, path), statuses in expected.items():
        op = spec["paths"][path][method]
        assert statuses <= set(op["responses"]), (method, path, set(op["responses"]))
    post = spec["paths"][URL]["post"]["responses"]
    for status in ("409", "422", "502"):
        examples = post[status]["content"]["application/problem+json"]["examples"]
        assert examples and all("code" in e["value"] for e in examples.values())
    assert "number-unavailable" in post["409"]["content"]["application/problem+json"]["examples"]
    schemas = spec["components"]["schemas"]
    assert schemas["PhoneNumberClaim"]["examples"][0]["number"].startswith("+")
    assert schemas["PhoneNumberClaim"]["properties"]["number"]["pattern"] == r"^\+[1-9][0-9]{1,14}$"
    assert schemas["PhoneNumberUpdate"]["examples"]
    assert schemas["AvailableNumbers"]["examples"]
