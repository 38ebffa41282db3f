"""Agents and single sign-on: an invited agent who signs in through the tenant's
provider has accepted; a first login with role agent makes an active, routable agent
that takes a seat of the plan."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import create_tenant
from tests.sso.conftest import DOMAIN, assert_problem, configure_sso, sso_login
from tests.sso.oidc_provider import OidcProvider

ALICE = f"alice@{DOMAIN}"  # who the provider signs in (tests/sso/oidc_provider.py)


async def agents(client: httpx.AsyncClient, t: dict[str, Any]) -> list[dict[str, Any]]:
    r = await client.get("/v1/agents", headers=t["headers"])
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def test_an_invited_agent_signing_in_becomes_active(client, app, provider):
    t = await create_tenant(client)
    h = t["headers"]
    r = await client.post("/v1/agents", json={"email": ALICE, "display_name": "Alice"}, headers=h)
    assert r.status_code == 201, r.text
    agent = r.json()
    assert agent["status"] == "invited"
    await configure_sso(client, app, t, provider)

    r = await sso_login(client, t["tenant"]["slug"])
    assert r.status_code == 200, r.text
    me = await client.get("/v1/me", headers={"Authorization": f"Bearer {r.json()['access_token']}"})
    assert me.json()["user"]["id"] == agent["id"]  # the invited user, not a new one
    r = await client.get(f"/v1/agents/{agent['id']}", headers=h)
    assert r.status_code == 200 and r.json()["status"] == "active"
    # Signing in again changes nothing more.
    version = r.json()["version"]
    assert (await sso_login(client, t["tenant"]["slug"])).status_code == 200
    r = await client.get(f"/v1/agents/{agent['id']}", headers=h)
    assert r.json()["status"] == "active" and r.json()["version"] == version


async def test_a_first_login_as_agent_makes_an_active_agent_without_invitation(
    client, app, provider
):
    t = await create_tenant(client)
    await configure_sso(client, app, t, provider)
    r = await sso_login(client, t["tenant"]["slug"])
    assert r.status_code == 200, r.text
    me = await client.get("/v1/me", headers={"Authorization": f"Bearer {r.json()['access_token']}"})
    assert me.json()["role"] == "agent" and me.json()["user"]["email_verified"] is True

    listed = await agents(client, t)
    assert [(a["id"], a["email"], a["display_name"], a["status"]) for a in listed] == [
        (me.json()["user"]["id"], ALICE, "Alice Agent", "active")
    ]
    r = await client.get("/v1/dev/outbox", params={"limit": 200}, headers=t["headers"])
    assert [m for m in r.json()["items"] if m["kind"] == "agent-invitation"] == []
    r = await client.get("/v1/quotas", headers=t["headers"])
    seats = {q["resource"]: q for q in r.json()["quotas"]}["agents"]
    assert seats["used"] == 1

    # The second login finds the same agent.
    assert (await sso_login(client, t["tenant"]["slug"])).status_code == 200
    assert [a["id"] for a in await agents(client, t)] == [me.json()["user"]["id"]]


async def test_other_roles_are_not_agents(client, app, provider):
    t = await create_tenant(client)
    await configure_sso(client, app, t, provider, default_role="supervisor")
    assert (await sso_login(client, t["tenant"]["slug"])).status_code == 200
    assert await agents(client, t) == []


async def test_a_first_login_past_the_agents_quota_is_refused(
    client, app, provider: OidcProvider, admin_conn
):
    t = await create_tenant(client)  # trial: 10 agents
    for i in range(10):
        r = await client.post(
            "/v1/agents",
            json={"email": f"agent{i}@example.com", "display_name": f"Agent {i}"},
            headers=t["headers"],
        )
        assert r.status_code == 201, r.text
    await configure_sso(client, app, t, provider)

    r = await sso_login(client, t["tenant"]["slug"])
    body = assert_problem(r, 403, "quota-exceeded")
    assert body["resource"] == "agents" and body["limit"] == 10
    # Nobody was made: no user, no login, no agent.
    assert await admin_conn.fetchval("SELECT count(*) FROM users WHERE email = $1", ALICE) == 0
    logins = "SELECT count(*) FROM login_emails WHERE email = $1"
    assert await admin_conn.fetchval(logins, ALICE) == 0
    assert len(await agents(client, t)) == 10

    # A seat freed, the same person gets in.
    first = (await agents(client, t))[0]
    r = await client.delete(f"/v1/agents/{first['id']}", headers=t["headers"])
    assert r.status_code == 204, r.text
    r = await sso_login(client, t["tenant"]["slug"])
    assert r.status_code == 200, r.text
    assert ALICE in [a["email"] for a in await agents(client, t)]
