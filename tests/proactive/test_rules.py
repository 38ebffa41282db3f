"""Proactive rules as a provisioning resource: CRUD with ETag / If-Match and
Idempotency-Key, validation errors that name the field, scopes per role, and tenant
isolation (another tenant's rule is 404)."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import create_tenant, create_user, login
from tests.proactive.conftest import make_world

CHECKOUT: dict[str, Any] = {
    "name": "Help at checkout",
    "conditions": {
        "url_contains": "/checkout",
        "min_pages_seen": 2,
        "attribute": {"name": "cart_value", "op": "gte", "value": 100},
    },
    "action": "invite_chat",
    "message": "Need a hand with your order?",
    "priority": 10,
}


async def test_rule_lifecycle(app: Any, client: httpx.AsyncClient) -> None:
    world = await make_world(app, client)
    h = world.headers
    body = CHECKOUT | {"channel_id": str(world.channel_id)}
    r = await client.post(
        "/v1/proactive-rules", json=body, headers=h | {"Idempotency-Key": "rule-1"}
    )
    assert r.status_code == 201, r.text
    rule = r.json()
    assert r.headers["ETag"] == '"1"'
    assert rule["conditions"] == CHECKOUT["conditions"]  # absent conditions are not stored
    assert (rule["enabled"], rule["channel_id"], rule["priority"]) == (
        True,
        str(world.channel_id),
        10,
    )
    again = await client.post(
        "/v1/proactive-rules", json=body, headers=h | {"Idempotency-Key": "rule-1"}
    )
    assert again.status_code == 201 and again.json()["id"] == rule["id"]
    assert again.headers.get("Idempotent-Replayed") == "true"

    r = await client.post(
        "/v1/proactive-rules", json=body | {"name": "HELP AT CHECKOUT"}, headers=h
    )
    assert r.status_code == 409 and r.json()["code"] == "proactive-rule-name-taken"
    assert r.json()["field"] == "body.name"

    r = await client.get(f"/v1/proactive-rules/{rule['id']}", headers=h)
    assert r.status_code == 200 and r.json() == rule

    r = await client.patch(
        f"/v1/proactive-rules/{rule['id']}",
        json={"enabled": False, "channel_id": None, "conditions": {"min_dwell_seconds": 45.5}},
        headers=h | {"If-Match": '"1"'},
    )
    assert r.status_code == 200, r.text
    changed = r.json()
    assert r.headers["ETag"] == '"2"'
    assert (changed["enabled"], changed["channel_id"], changed["conditions"]) == (
        False,
        None,
        {"min_dwell_seconds": 45.5},
    )
    stale = await client.patch(
        f"/v1/proactive-rules/{rule['id']}", json={"priority": 1}, headers=h | {"If-Match": '"1"'}
    )
    assert stale.status_code == 412 and stale.json()["field"] == "header.If-Match"

    await world.rule(name="Second", conditions={"min_pages_seen": 5})
    page1 = await client.get("/v1/proactive-rules?limit=1", headers=h)
    assert page1.status_code == 200
    assert [i["name"] for i in page1.json()["items"]] == ["Second"]
    page2 = await client.get(
        f"/v1/proactive-rules?limit=1&cursor={page1.json()['next_cursor']}", headers=h
    )
    assert [i["name"] for i in page2.json()["items"]] == ["Help at checkout"]
    assert page2.json()["next_cursor"] is None

    r = await client.delete(f"/v1/proactive-rules/{rule['id']}", headers=h | {"If-Match": '"2"'})
    assert r.status_code == 204
    assert (await client.get(f"/v1/proactive-rules/{rule['id']}", headers=h)).status_code == 404


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"conditions": {}}, "body.conditions"),
        ({"conditions": {"min_pages_seen": None}}, "body.conditions"),
        ({"conditions": {"min_pages_seen": "3"}}, "body.conditions.min_pages_seen"),
        ({"conditions": {"min_pages_seen": 0}}, "body.conditions.min_pages_seen"),
        ({"conditions": {"url_contains": ""}}, "body.conditions.url_contains"),
        ({"conditions": {"url_contains": "a\x00b"}}, "body.conditions.url_contains"),
        ({"conditions": {"min_dwell_seconds": -1}}, "body.conditions.min_dwell_seconds"),
        ({"conditions": {"min_dwell_seconds": "30"}}, "body.conditions.min_dwell_seconds"),
        (
            {"conditions": {"attribute": {"name": "cart_value", "op": "gt", "value": "big"}}},
            "body.conditions.attribute.value",
        ),
        (
            {"conditions": {"attribute": {"name": "cart value", "op": "eq", "value": 1}}},
            "body.conditions.attribute.name",
        ),
        (
            {"conditions": {"attribute": {"name": "tier", "op": "like", "value": "gold"}}},
            "body.conditions.attribute.op",
        ),
        ({"conditions": {"min_pages_seen": 2, "colour": "red"}}, "body.conditions.colour"),
        ({"action": "send_sms"}, "body.action"),
        ({"message": ""}, "body.message"),
        ({"message": "x" * 501}, "body.message"),
        ({"priority": True}, "body.priority"),
        ({"enabled": "yes"}, "body.enabled"),
        ({"name": " "}, "body.name"),
    ],
)
async def test_bad_rules_name_the_field(
    client: httpx.AsyncClient, admin_conn: asyncpg.Connection, change: dict[str, Any], field: str
) -> None:
    t = await create_tenant(client)
    r = await client.post("/v1/proactive-rules", json=CHECKOUT | change, headers=t["headers"])
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["field"] == field, r.json()
    assert await admin_conn.fetchval("SELECT count(*) FROM proactive_rules") == 0


async def test_channel_must_be_this_tenants_webchat(app: Any, client: httpx.AsyncClient) -> None:
    world = await make_world(app, client)
    other = await make_world(app, client)
    sms = await client.post(
        "/v1/channels",
        json={
            "type": "sms",
            "name": "Texts",
            "config": {"provider": "sandbox", "provider_account_id": "sandbox-rules"},
        },
        headers=world.headers,
    )
    assert sms.status_code == 201, sms.text
    for channel_id, code in (
        (str(other.channel_id), "unknown-reference"),
        (sms.json()["id"], "channel-not-webchat"),
    ):
        r = await client.post(
            "/v1/proactive-rules",
            json=CHECKOUT | {"channel_id": channel_id},
            headers=world.headers,
        )
        assert r.status_code == 422, r.text
        assert (r.json()["code"], r.json()["field"]) == (code, "body.channel_id")
    rule = await world.rule(conditions={"min_pages_seen": 1})
    r = await client.patch(
        f"/v1/proactive-rules/{rule['id']}",
        json={"channel_id": sms.json()["id"]},
        headers=world.headers,
    )
    assert (r.status_code, r.json()["code"]) == (422, "channel-not-webchat")
    r = await client.patch(
        f"/v1/proactive-rules/{rule['id']}", json={"name": None}, headers=world.headers
    )
    assert (r.status_code, r.json()["field"]) == (422, "body.name")


async def test_another_tenants_rule_is_not_found(app: Any, client: httpx.AsyncClient) -> None:
    mine = await make_world(app, client)
    theirs = await make_world(app, client, company_name="Globex")
    rule = await mine.rule(conditions={"min_pages_seen": 1})
    url = f"/v1/proactive-rules/{rule['id']}"
    h = theirs.headers
    assert (await client.get(url, headers=h)).json()["code"] == "proactive-rule-not-found"
    assert (await client.patch(url, json={"priority": 1}, headers=h)).status_code == 404
    assert (await client.delete(url, headers=h)).status_code == 404
    assert (await client.get("/v1/proactive-rules", headers=h)).json()["items"] == []
    # ...and their visitors never see it.
    visitor = await theirs.visitor()
    from tests.proactive.conftest import at

    assert await theirs.view(visitor, at("2026-11-24T12:00:00+00:00")) is None
    assert (await client.get(url, headers=mine.headers)).status_code == 200


async def test_scopes_per_role(app: Any, client: httpx.AsyncClient) -> None:
    world = await make_world(app, client)
    rule = await world.rule(conditions={"min_pages_seen": 1})
    supervisor = await login(client, (await create_user(app, world.tenant, "supervisor"))["email"])
    agent = await login(client, (await create_user(app, world.tenant, "agent"))["email"])
    h = supervisor["headers"]
    assert (await client.get(f"/v1/proactive-rules/{rule['id']}", headers=h)).status_code == 200
    assert (await client.get("/v1/proactive-decisions", headers=h)).status_code == 200
    r = await client.post("/v1/proactive-rules", json=CHECKOUT, headers=h)
    assert (r.status_code, r.json()["required_scope"]) == (403, "proactive:write")
    r = await client.get("/v1/proactive-rules", headers=agent["headers"])
    assert (r.status_code, r.json()["required_scope"]) == (403, "proactive:read")


async def test_a_channel_with_rules_on_it_cannot_be_deleted(
    app: Any, client: httpx.AsyncClient
) -> None:
    """A rule that lost its channel would apply to every channel: the channel's deletion
    is refused while rules point at it."""
    world = await make_world(app, client)
    h = world.headers
    r = await client.post(
        "/v1/proactive-rules", json=CHECKOUT | {"channel_id": str(world.channel_id)}, headers=h
    )
    assert r.status_code == 201, r.text
    rule = r.json()
    r = await client.delete(f"/v1/channels/{world.channel_id}", headers=h)
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "channel-in-use" and "Help at checkout" in r.json()["detail"]
    r = await client.delete(f"/v1/proactive-rules/{rule['id']}", headers=h)
    assert r.status_code == 204, r.text
    r = await client.delete(f"/v1/channels/{world.channel_id}", headers=h)
    assert r.status_code == 204, r.text
