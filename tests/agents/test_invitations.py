"""An agent's way in: invited by mail, accepting with a password (or through single
sign-on), logging in; and the ways out: disabled or deleted, their tokens stop working."""

from __future__ import annotations

import uuid

from app.agents.service import activate_invited_agent
from app.db.tenant import bind_tenant, mint_scope
from tests.agents.conftest import invitation_mails, invitation_token, invite
from tests.conftest import STRONG_PASSWORD, create_tenant, create_user, login

ACCEPT = "/v1/agents/invitations/accept"


async def test_invite_accept_login_as_a_new_agent_would(client, app):
    t = await create_tenant(client, company_name="Globex Support")
    h = t["headers"]
    skill = (await client.post("/v1/skills", json={"name": "Billing"}, headers=h)).json()
    profile = (await client.post("/v1/routing-profiles", json={"name": "Voice"}, headers=h)).json()
    sup = await create_user(app, t, "supervisor")
    agent = await invite(
        client,
        t,
        email="Maria.Lopez@Example.com",
        display_name="María López",
        routing_profile_id=profile["id"],
        team="Billing",
        supervisor_id=sup["id"],
        skills=[{"skill_id": skill["id"], "proficiency": 4}],
    )
    assert agent["status"] == "invited" and agent["version"] == 1
    assert agent["skills"] == [{"skill_id": skill["id"], "proficiency": 4}]
    assert agent["supervisor_id"] == sup["id"] and agent["team"] == "Billing"

    mail = (await invitation_mails(client, t, agent["email"]))[0]
    assert (
        "Globex Support" in mail["subject"] and "/v1/agents/invitations/accept" in mail["body_text"]
    )
    token = await invitation_token(client, t, agent["email"])
    assert token not in str(agent)  # the token travels by mail only

    # No password yet: no login.
    r = await client.post(
        "/v1/auth/token", json={"email": "maria.lopez@example.com", "password": STRONG_PASSWORD}
    )
    assert r.status_code == 401
    # A weak password is refused and the invitation stays usable.
    r = await client.post(ACCEPT, json={"token": token, "password": "maria.lopez"})
    assert r.status_code == 422 and r.json()["code"] == "weak-password"
    assert r.json()["field"] == "body.password"
    r = await client.get(f"/v1/agents/{agent['id']}", headers=h)
    assert r.json()["status"] == "invited"

    r = await client.post(
        ACCEPT, json={"token": token, "password": STRONG_PASSWORD, "display_name": "Maria L."}
    )
    assert r.status_code == 200, r.text
    assert r.json()["role"] == "agent" and r.json()["email_verified"] is True
    r = await client.get(f"/v1/agents/{agent['id']}", headers=h)
    assert r.json()["status"] == "active" and r.json()["display_name"] == "Maria L."
    assert r.headers["etag"] == '"2"'

    tokens = await login(client, "maria.lopez@example.com")
    me = (await client.get("/v1/me", headers=tokens["headers"])).json()
    assert me["role"] == "agent" and me["scopes"] == [
        "agent:work",
        "conversations:read",
        "conversations:write",
        "customers:read",
        "me",
    ]
    assert me["user"]["id"] == agent["id"] and me["user"]["display_name"] == "Maria L."
    # Agents do not administer agents.
    assert (await client.get("/v1/agents", headers=tokens["headers"])).status_code == 403

    # The token is spent.
    r = await client.post(ACCEPT, json={"token": token, "password": STRONG_PASSWORD + "!"})
    assert r.status_code == 422 and r.json()["code"] == "invalid-invitation-token"
    assert r.json()["field"] == "body.token"
    actions = {
        e["action"] for e in (await client.get("/v1/audit-events", headers=h)).json()["items"]
    }
    assert {"agent.invite", "agent.accept_invitation"} <= actions


async def test_resending_revokes_the_earlier_token(client):
    t = await create_tenant(client)
    agent = await invite(client, t)
    first = await invitation_token(client, t, agent["email"])
    r = await client.post(f"/v1/agents/{agent['id']}/invitation", headers=t["headers"])
    assert r.status_code == 201, r.text
    assert r.json()["agent_id"] == agent["id"] and r.json()["email"] == agent["email"]
    second = await invitation_token(client, t, agent["email"])
    assert second != first and len(await invitation_mails(client, t, agent["email"])) == 2

    r = await client.post(ACCEPT, json={"token": first, "password": STRONG_PASSWORD})
    assert r.status_code == 422 and r.json()["code"] == "invalid-invitation-token"
    r = await client.post(ACCEPT, json={"token": second, "password": STRONG_PASSWORD})
    assert r.status_code == 200
    r = await client.post(f"/v1/agents/{agent['id']}/invitation", headers=t["headers"])
    assert r.status_code == 409 and r.json()["code"] == "agent-not-invited"


async def test_expired_forged_and_foreign_tokens_are_refused(client, admin_conn):
    t = await create_tenant(client)
    agent = await invite(client, t)
    token = await invitation_token(client, t, agent["email"])
    await admin_conn.execute(
        "UPDATE agent_invitations SET expires_at = now() - interval '1 second'"
    )
    forged = token[:-5] + ("AAAAA" if not token.endswith("AAAAA") else "BBBBB")
    for bad in (token, forged, "nope", "sbi_" + "A" * 87, "sbv" + token[3:]):
        r = await client.post(ACCEPT, json={"token": bad, "password": STRONG_PASSWORD})
        assert r.status_code == 422, bad
        assert (r.json()["code"], r.json()["field"]) == ("invalid-invitation-token", "body.token")
    r = await client.post(ACCEPT, json={"token": token})
    assert r.status_code == 422 and r.json()["field"] == "body.password"
    r = await client.get(f"/v1/agents/{agent['id']}", headers=t["headers"])
    assert r.json()["status"] == "invited"


async def test_accept_with_an_idempotency_key_replays_the_answer(client):
    t = await create_tenant(client)
    agent = await invite(client, t)
    token = await invitation_token(client, t, agent["email"])
    body = {"token": token, "password": STRONG_PASSWORD}
    first = await client.post(ACCEPT, json=body, headers={"Idempotency-Key": "accept-1"})
    again = await client.post(ACCEPT, json=body, headers={"Idempotency-Key": "accept-1"})
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"


async def test_disabling_an_agent_stops_their_tokens_and_enabling_restores_login(client):
    t = await create_tenant(client)
    h = t["headers"]
    agent = await invite(client, t)
    token = await invitation_token(client, t, agent["email"])
    await client.post(ACCEPT, json={"token": token, "password": STRONG_PASSWORD})
    tokens = await login(client, agent["email"])
    assert (await client.get("/v1/me", headers=tokens["headers"])).status_code == 200

    r = await client.patch(f"/v1/agents/{agent['id']}", json={"status": "disabled"}, headers=h)
    assert r.status_code == 200 and r.json()["status"] == "disabled"
    r = await client.get("/v1/me", headers=tokens["headers"])
    assert r.status_code == 401
    r = await client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 401
    r = await client.post(
        "/v1/auth/token", json={"email": agent["email"], "password": STRONG_PASSWORD}
    )
    assert r.status_code == 401

    r = await client.patch(f"/v1/agents/{agent['id']}", json={"status": "active"}, headers=h)
    assert r.status_code == 200 and r.json()["status"] == "active"
    fresh = await login(client, agent["email"])
    assert (await client.get("/v1/me", headers=fresh["headers"])).status_code == 200
    # Sessions from before the disabling stay revoked.
    r = await client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 401


async def test_deleting_an_agent_removes_their_login_and_frees_the_email(client, admin_conn):
    t = await create_tenant(client)
    h = t["headers"]
    agent = await invite(client, t)
    token = await invitation_token(client, t, agent["email"])
    await client.post(ACCEPT, json={"token": token, "password": STRONG_PASSWORD})
    tokens = await login(client, agent["email"])

    r = await client.delete(f"/v1/agents/{agent['id']}", headers=h | {"If-Match": '"1"'})
    assert r.status_code == 412
    r = await client.delete(f"/v1/agents/{agent['id']}", headers=h | {"If-Match": '"2"'})
    assert r.status_code == 204
    assert (await client.get("/v1/me", headers=tokens["headers"])).status_code == 401
    assert (await client.get(f"/v1/agents/{agent['id']}", headers=h)).status_code == 404
    assert await admin_conn.fetchval("SELECT count(*) FROM users WHERE role = 'agent'") == 0
    again = await invite(client, t, email=agent["email"])
    assert again["id"] != agent["id"] and again["status"] == "invited"


async def test_single_sign_on_of_an_invited_agent_activates_them(client, app):
    """What the SSO callback does for an invited agent's email (app/sso calls this)."""
    t = await create_tenant(client)
    agent = await invite(client, t)
    other = await create_user(app, t, "admin")
    token = await invitation_token(client, t, agent["email"])
    scope = mint_scope(uuid.UUID(t["tenant"]["id"]))
    async with app.state.session_factory() as session, session.begin():
        await bind_tenant(session, scope)
        assert await activate_invited_agent(session, scope, uuid.UUID(other["id"])) is None
        activated = await activate_invited_agent(session, scope, uuid.UUID(agent["id"]))
        assert activated is not None and activated.status == "active"
    async with app.state.session_factory() as session, session.begin():
        await bind_tenant(session, scope)  # a second login: nothing left to do
        assert await activate_invited_agent(session, scope, uuid.UUID(agent["id"])) is None
    r = await client.get(f"/v1/agents/{agent['id']}", headers=t["headers"])
    assert r.json()["status"] == "active"
    r = await client.post(ACCEPT, json={"token": token, "password": STRONG_PASSWORD})
    assert r.status_code == 422 and r.json()["code"] == "invalid-invitation-token"


async def test_agents_made_without_an_invitation_get_one_when_resent(client, app):
    """Tenants as code create agents quietly; an admin sends the invitation later."""
    from app.agents import service
    from app.agents.schemas import AgentCreate

    t = await create_tenant(client)
    scope = mint_scope(uuid.UUID(t["tenant"]["id"]))
    async with app.state.session_factory() as session, session.begin():
        await bind_tenant(session, scope)
        view = await service.create(
            session,
            scope,
            AgentCreate(email="quiet@example.com", display_name="Quiet"),
            "trial",
            send_invitation=False,
        )
    assert await invitation_mails(client, t, "quiet@example.com") == []
    r = await client.get(f"/v1/agents/{view.agent.id}", headers=t["headers"])
    assert r.json()["status"] == "invited"
    r = await client.post(f"/v1/agents/{view.agent.id}/invitation", headers=t["headers"])
    assert r.status_code == 201
    token = await invitation_token(client, t, "quiet@example.com")
    r = await client.post(ACCEPT, json={"token": token, "password": STRONG_PASSWORD})
    assert r.status_code == 200
