"""Customer profiles as a tenant's CRM integration meets them: create and look up by any
spelling of an identity, identities held by another profile, attributes as a merge
patch, identities added and removed, consent, scopes, isolation and hostile input."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.conftest import create_tenant, create_user, login
from tests.customers.conftest import create_customer, get_customer, problem, timeline


async def test_create_then_find_by_any_spelling_of_an_identity(client: httpx.AsyncClient) -> None:
    t = await create_tenant(client)
    h = t["headers"]
    body = {
        "display_name": "  Maria   Lopez ",
        "attributes": {"tier": "gold", "lifetime_value": 1240, "vip": True, "score": 0.5},
        "timezone": "Europe/Madrid",
        "language": "es",
        "identities": [
            {"kind": "phone", "value": "+34 612 34 56 78"},
            {"kind": "email", "value": "Maria.Lopez@Example.COM"},
        ],
    }
    r = await client.post("/v1/customers", json=body, headers=h)
    assert r.status_code == 201, r.text
    assert r.headers["etag"] == '"1"'
    maria = r.json()
    assert r.headers["location"] == f"/v1/customers/{maria['id']}"
    assert maria["display_name"] == "Maria Lopez"
    assert [(i["kind"], i["value"]) for i in maria["identities"]] == [
        ("phone", "+34612345678"),
        ("email", "maria.lopez@example.com"),
    ]
    assert maria["attributes"] == body["attributes"]
    assert (maria["timezone"], maria["language"], maria["merged_into_id"]) == (
        "Europe/Madrid",
        "es",
        None,
    )
    assert maria["consents"] == [] and maria["version"] == 1
    other = await create_customer(client, t, display_name="Marco Polo")

    async def lookup(**params: Any) -> list[str]:
        r = await client.get("/v1/customers", params=params, headers=h)
        assert r.status_code == 200, r.text
        return [c["id"] for c in r.json()["items"]]

    assert await lookup(identity="phone:+34 612-345-678") == [maria["id"]]
    assert await lookup(identity="phone:+34 (612) 345 678") == [maria["id"]]
    assert await lookup(identity="email:MARIA.LOPEZ@example.com") == [maria["id"]]
    assert await lookup(identity="phone:+34 699 000 000") == []
    assert await lookup(q="mar") == [other["id"], maria["id"]]  # newest first
    assert await lookup(q="MARIA L") == [maria["id"]]
    assert await lookup(q="%") == []  # a prefix, not a pattern
    assert (await get_customer(client, t, maria["id"]))["identities"] == maria["identities"]

    # Cursor pages, newest first, no overlap.
    for i in range(3):
        await create_customer(client, t, display_name=f"Zed {i}")
    r = await client.get("/v1/customers", params={"limit": 3}, headers=h)
    first = r.json()
    assert len(first["items"]) == 3 and first["next_cursor"]
    r = await client.get(
        "/v1/customers", params={"limit": 3, "cursor": first["next_cursor"]}, headers=h
    )
    second = r.json()
    assert second["next_cursor"] is None
    ids = [c["id"] for c in first["items"] + second["items"]]
    assert len(ids) == len(set(ids)) == 5

    # The profile's first timeline item says how it began.
    items = (await timeline(client, t, maria["id"]))["items"]
    assert items[0]["kind"] == "customer.created"
    assert items[0]["summary"]["source"] == "api"


async def test_an_identity_of_another_profile_is_refused_naming_the_holder(
    client: httpx.AsyncClient, clean_db: Any
) -> None:
    t = await create_tenant(client)
    h = t["headers"]
    ana = await create_customer(client, t, identities=[{"kind": "phone", "value": "+12025550123"}])
    body = {
        "display_name": "Ana again",
        "identities": [
            {"kind": "email", "value": "ana@example.com"},
            {"kind": "phone", "value": "+1 (202) 555-0123"},
        ],
    }
    r = await client.post("/v1/customers", json=body, headers=h)
    p = problem(r, 409, "identity-taken")
    assert p["field"] == "body.identities.1.value" and p["customer_id"] == ana["id"]
    # Nothing was written: the email is still free.
    tid = uuid.UUID(t["tenant"]["id"])
    assert await clean_db.fetchval("SELECT count(*) FROM customers WHERE tenant_id = $1", tid) == 1
    assert (
        await clean_db.fetchval(
            "SELECT count(*) FROM customer_identities WHERE tenant_id = $1 AND kind = 'email'",
            tid,
        )
        == 0
    )
    # Two spellings of one number in one request are one identity.
    r = await client.post(
        "/v1/customers",
        json={
            "identities": [
                {"kind": "phone", "value": "+44 20 7946 0958"},
                {"kind": "phone", "value": "+442079460958"},
            ]
        },
        headers=h,
    )
    assert problem(r, 422)["field"] == "body.identities.1.value"
    # Another tenant's customers are none of this tenant's business.
    t2 = await create_tenant(client)
    r = await client.post("/v1/customers", json=body, headers=t2["headers"])
    assert r.status_code == 201, r.text


async def test_attributes_are_a_merge_patch_under_if_match(client: httpx.AsyncClient) -> None:
    t = await create_tenant(client)
    h = t["headers"]
    c = await create_customer(
        client, t, display_name="Li", attributes={"tier": "gold", "crm_id": "C-1", "score": 3}
    )
    url = f"/v1/customers/{c['id']}"
    patch = {
        "attributes": {"tier": "platinum", "crm_id": None, "vip": True, "absent": None},
        "timezone": "America/Mexico_City",
        "display_name": None,
    }
    r = await client.patch(url, json=patch, headers=h | {"If-Match": '"1"'})
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == '"2"'
    got = r.json()
    assert got["attributes"] == {"tier": "platinum", "score": 3, "vip": True}
    assert (got["timezone"], got["display_name"], got["version"]) == (
        "America/Mexico_City",
        None,
        2,
    )
    # A stale ETag changes nothing.
    r = await client.patch(url, json={"language": "fr"}, headers=h | {"If-Match": '"1"'})
    assert problem(r, 412, "precondition-failed")["field"] == "header.If-Match"
    # The same values again: no new version.
    r = await client.patch(url, json={"attributes": {"tier": "platinum"}}, headers=h)
    assert r.status_code == 200 and r.json()["version"] == 2
    # At most 50 keys once patched.
    many = {f"k{i}": i for i in range(48)}
    r = await client.patch(url, json={"attributes": many}, headers=h)
    assert problem(r, 422, "too-many-attributes")["field"] == "body.attributes"
    r = await client.patch(url, json={"attributes": many | {"vip": None, "score": None}}, headers=h)
    assert r.status_code == 200 and len(r.json()["attributes"]) == 49
    # attributes itself cannot be null; a value cannot be an object.
    r = await client.patch(url, json={"attributes": None}, headers=h)
    assert problem(r, 422)["field"] == "body.attributes"
    r = await client.patch(url, json={"attributes": {"address": {"city": "Lyon"}}}, headers=h)
    assert problem(r, 422)["field"] == "body.attributes.address"
    r = await client.patch(url, json={"attributes": {"note": "x" * 501}}, headers=h)
    assert problem(r, 422)["field"] == "body.attributes.note"
    assert (await get_customer(client, t, c["id"]))["version"] == 3


async def test_identities_are_added_and_removed_but_never_the_last(
    client: httpx.AsyncClient,
) -> None:
    t = await create_tenant(client)
    h = t["headers"]
    c = await create_customer(client, t, identities=[{"kind": "webchat", "value": "v_visitor_001"}])
    other = await create_customer(
        client, t, identities=[{"kind": "email", "value": "taken@example.com"}]
    )
    url = f"/v1/customers/{c['id']}/identities"
    r = await client.post(url, json={"kind": "whatsapp", "value": "34612345678"}, headers=h)
    assert r.status_code == 201, r.text
    wa = r.json()
    assert (wa["kind"], wa["value"], wa["verified"]) == ("whatsapp", "+34612345678", False)
    # Already this profile's: answered as it is.
    r = await client.post(url, json={"kind": "whatsapp", "value": "+34 612 345 678"}, headers=h)
    assert (r.status_code, r.json()["id"]) == (200, wa["id"])
    r = await client.post(url, json={"kind": "email", "value": "TAKEN@example.com"}, headers=h)
    p = problem(r, 409, "identity-taken")
    assert (p["field"], p["customer_id"]) == ("body.value", other["id"])
    r = await client.post(url, json={"kind": "messenger", "value": "not-digits"}, headers=h)
    assert problem(r, 422)["field"] == "body.value"
    assert (await get_customer(client, t, c["id"]))["version"] == 2

    r = await client.delete(f"{url}/{other['identities'][0]['id']}", headers=h)
    assert problem(r, 404, "identity-not-found")["field"] == "path.identity_id"
    r = await client.delete(f"{url}/{wa['id']}", headers=h | {"If-Match": '"1"'})
    problem(r, 412, "precondition-failed")
    r = await client.delete(f"{url}/{wa['id']}", headers=h | {"If-Match": '"2"'})
    assert r.status_code == 204, r.text
    last = c["identities"][0]["id"]
    problem(await client.delete(f"{url}/{last}", headers=h), 409, "last-identity")
    after = await get_customer(client, t, c["id"])
    assert [i["id"] for i in after["identities"]] == [last] and after["version"] == 3
    # The change record says what happened, and who did it.
    r = await client.get(f"/v1/customers/{c['id']}/changes", headers=h)
    kinds = [(x["kind"], x["detail"]["kind"], x["actor_type"]) for x in r.json()["items"]]
    assert kinds == [
        ("identity_removed", "whatsapp", "api_key"),
        ("identity_added", "whatsapp", "api_key"),
    ]


async def test_consent_per_channel_is_recorded_and_on_the_timeline(
    client: httpx.AsyncClient, clean_db: Any
) -> None:
    t = await create_tenant(client)
    h = t["headers"]
    c = await create_customer(client, t)
    url = f"/v1/customers/{c['id']}/consents"
    r = await client.put(f"{url}/sms", json={"status": "granted", "source": "web form"}, headers=h)
    assert r.status_code == 200, r.text
    assert (r.json()["channel"], r.json()["status"], r.json()["source"]) == (
        "sms",
        "granted",
        "web form",
    )
    # The same again changes nothing; a revocation is a new event.
    r = await client.put(f"{url}/sms", json={"status": "granted", "source": "web form"}, headers=h)
    assert r.status_code == 200
    r = await client.put(f"{url}/sms", json={"status": "revoked"}, headers=h)
    assert r.status_code == 200 and r.json()["source"] is None
    r = await client.put(f"{url}/email", json={"status": "granted"}, headers=h)
    got = await get_customer(client, t, c["id"])
    assert [(x["channel"], x["status"]) for x in got["consents"]] == [
        ("email", "granted"),
        ("sms", "revoked"),
    ]
    items = (await timeline(client, t, c["id"], kinds="consent.changed"))["items"]
    assert [(i["channel"], i["summary"]["status"], i["summary"]["previous"]) for i in items] == [
        ("sms", "granted", None),
        ("sms", "revoked", "granted"),
        ("email", "granted", None),
    ]
    r = await client.put(f"{url}/fax", json={"status": "granted"}, headers=h)
    assert problem(r, 422)["field"] == "path.channel"
    r = await client.put(f"{url}/sms", json={"status": "maybe"}, headers=h)
    assert problem(r, 422)["field"] == "body.status"
    actions = await clean_db.fetch(
        "SELECT action FROM audit_events WHERE tenant_id = $1 AND action = 'customer.consent'",
        uuid.UUID(t["tenant"]["id"]),
    )
    assert len(actions) == 3


async def test_agents_read_profiles_and_supervisors_change_them(
    client: httpx.AsyncClient, app: Any
) -> None:
    t = await create_tenant(client)
    c = await create_customer(client, t)
    agent = await login(client, (await create_user(app, t, "agent"))["email"])
    supervisor = await login(client, (await create_user(app, t, "supervisor"))["email"])
    r = await client.get(f"/v1/customers/{c['id']}", headers=agent["headers"])
    assert r.status_code == 200
    r = await client.get(f"/v1/customers/{c['id']}/timeline", headers=agent["headers"])
    assert r.status_code == 200
    r = await client.patch(
        f"/v1/customers/{c['id']}", json={"language": "de"}, headers=agent["headers"]
    )
    assert problem(r, 403, "insufficient-scope")["required_scope"] == "customers:write"
    r = await client.patch(
        f"/v1/customers/{c['id']}", json={"language": "de"}, headers=supervisor["headers"]
    )
    assert r.status_code == 200 and r.json()["language"] == "de"


async def test_another_tenants_customer_is_not_found_everywhere(client: httpx.AsyncClient) -> None:
    t1 = await create_tenant(client)
    t2 = await create_tenant(client)
    mine = await create_customer(client, t2)
    theirs = await create_customer(
        client, t1, identities=[{"kind": "phone", "value": "+12025550199"}]
    )
    cid, iid = theirs["id"], theirs["identities"][0]["id"]
    h = t2["headers"]
    for method, path, body in [
        ("GET", f"/v1/customers/{cid}", None),
        ("PATCH", f"/v1/customers/{cid}", {"language": "en"}),
        ("POST", f"/v1/customers/{cid}/identities", {"kind": "email", "value": "x@example.com"}),
        ("DELETE", f"/v1/customers/{cid}/identities/{iid}", None),
        ("POST", f"/v1/customers/{cid}/merge", {"customer_id": mine["id"]}),
        ("POST", f"/v1/customers/{cid}/split", {"identity_ids": [iid]}),
        ("PUT", f"/v1/customers/{cid}/consents/sms", {"status": "granted"}),
        ("GET", f"/v1/customers/{cid}/timeline", None),
        ("GET", f"/v1/customers/{cid}/changes", None),
    ]:
        r = await client.request(method, path, json=body, headers=h)
        assert problem(r, 404, "customer-not-found"), (method, path)
    # Merging another tenant's profile into one's own: the absorbed one is not found.
    r = await client.post(f"/v1/customers/{mine['id']}/merge", json={"customer_id": cid}, headers=h)
    assert problem(r, 404, "customer-not-found")["field"] == "body.customer_id"
    r = await client.get("/v1/customers", params={"identity": "phone:+12025550199"}, headers=h)
    assert r.json()["items"] == []
    assert (await get_customer(client, t1, cid))["version"] == 1


HOSTILE: list[tuple[dict[str, Any], str]] = [
    ({"identities": []}, "body.identities"),
    ({"identities": [{"kind": "fax", "value": "1"}]}, "body.identities.0.kind"),
    ({"identities": [{"kind": "phone", "value": "12"}]}, "body.identities.0.value"),
    ({"identities": [{"kind": "email", "value": "not-an-address"}]}, "body.identities.0.value"),
    ({"identities": [{"kind": "webchat", "value": "a\x00b"}]}, "body.identities.0.value"),
    ({"timezone": "Mars/Olympus"}, "body.timezone"),
    ({"timezone": "../../etc/passwd"}, "body.timezone"),
    ({"language": "english!!"}, "body.language"),
    ({"display_name": "a\x00b"}, "body.display_name"),
    ({"display_name": "   "}, "body.display_name"),
    ({"attributes": {"cart": [1, 2]}}, "body.attributes.cart"),
    ({"attributes": {"n": 2**60}}, "body.attributes.n"),
    ({"attributes": {"bad key": 1}}, "body.attributes"),
    ({"attributes": {"gone": None}}, "body.attributes.gone"),
    ({"attributes": {f"k{i}": i for i in range(51)}}, "body.attributes"),
    (
        {"identities": [{"kind": "phone", "value": "+12025550100", "verified": 1}]},
        "body.identities.0.verified",
    ),
    ({"unknown": 1}, "body.unknown"),
]


async def test_hostile_input_is_refused_naming_the_field(
    client: httpx.AsyncClient, clean_db: Any
) -> None:
    t = await create_tenant(client)
    h = t["headers"]
    base = {"identities": [{"kind": "phone", "value": "+12025550100"}]}
    for body, field in HOSTILE:
        r = await client.post("/v1/customers", json=base | body, headers=h)
        assert problem(r, 422)["field"] == field, (body, r.text)
    c = await create_customer(client, t)
    for params, field in [
        ({"identity": "phone"}, "query.identity"),
        ({"identity": "fax:123"}, "query.identity"),
        ({"identity": "phone:not a number"}, "query.identity"),
        ({"q": "a\x01"}, "query.q"),
        ({"cursor": "!!"}, "query.cursor"),
    ]:
        r = await client.get("/v1/customers", params=params, headers=h)
        assert problem(r, 422)["field"] == field, (params, r.text)
    url = f"/v1/customers/{c['id']}/timeline"
    for params, field in [
        ({"kinds": "BAD KIND"}, "query.kinds"),
        ({"kinds": ","}, "query.kinds"),
        ({"after": "2026-01-01T10:00:00"}, "query.after"),
        ({"cursor": "A" * 31}, "query.cursor"),
        ({"limit": 0}, "query.limit"),
    ]:
        r = await client.get(url, params=params, headers=h)
        assert problem(r, 422)["field"] == field, (params, r.text)
    r = await client.post(
        f"/v1/customers/{c['id']}/split", json={"identity_ids": ["nope"]}, headers=h
    )
    assert problem(r, 422)["field"] == "body.identity_ids.0"
    r = await client.post(f"/v1/customers/{c['id']}/merge", json={}, headers=h)
    assert problem(r, 422)["field"] == "body.customer_id"
    tid = uuid.UUID(t["tenant"]["id"])
    assert await clean_db.fetchval("SELECT count(*) FROM customers WHERE tenant_id = $1", tid) == 1
