from __future__ import annotations

import asyncio
import uuid

from tests.agents.conftest import invitation_mails, invite
from tests.conftest import create_tenant, create_user, login

URL = "/v1/agents"


async def _skill(client, t, name):
    r = await client.post("/v1/skills", json={"name": name}, headers=t["headers"])
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def test_update_with_etags_and_list_filters(client):
    t = await create_tenant(client)
    h = t["headers"]
    billing, spanish = await _skill(client, t, "Billing"), await _skill(client, t, "Spanish")
    ana = await invite(client, t, team="Billing", skills=[{"skill_id": billing, "proficiency": 3}])
    bo = await invite(client, t, display_name="Bo", team="Retention")

    # Skills sent replace the set.
    r = await client.patch(
        f"{URL}/{ana['id']}",
        json={"skills": [{"skill_id": spanish, "proficiency": 5}], "team": "Retention"},
        headers=h | {"If-Match": '"1"'},
    )
    assert r.status_code == 200 and r.headers["etag"] == '"2"'
    assert r.json()["skills"] == [{"skill_id": spanish, "proficiency": 5}]
    # A stale ETag: 412, nothing changed.
    r = await client.patch(
        f"{URL}/{ana['id']}", json={"team": "Sales"}, headers=h | {"If-Match": '"1"'}
    )
    assert r.status_code == 412 and r.json()["current_etag"] == '"2"'
    assert (await client.get(f"{URL}/{ana['id']}", headers=h)).json()["team"] == "Retention"
    # The same values again keep the version; null clears an optional field.
    r = await client.patch(
        f"{URL}/{ana['id']}",
        json={"skills": [{"skill_id": spanish, "proficiency": 5}], "team": "Retention"},
        headers=h,
    )
    assert r.headers["etag"] == '"2"'
    r = await client.patch(f"{URL}/{bo['id']}", json={"team": None}, headers=h)
    assert r.json()["team"] is None and r.headers["etag"] == '"2"'
    # A new proficiency for a skill already held.
    r = await client.patch(
        f"{URL}/{ana['id']}", json={"skills": [{"skill_id": spanish, "proficiency": 2}]}, headers=h
    )
    assert r.json()["skills"] == [{"skill_id": spanish, "proficiency": 2}]
    assert r.headers["etag"] == '"3"'

    async def ids(**params):
        r = await client.get(URL, params=params, headers=h)
        assert r.status_code == 200, r.text
        return [a["id"] for a in r.json()["items"]]

    assert await ids() == [bo["id"], ana["id"]]  # newest first
    assert await ids(team="retention") == [ana["id"]]
    assert await ids(skill_id=spanish) == [ana["id"]]
    assert await ids(skill_id=billing) == []
    assert await ids(status="invited") == [bo["id"], ana["id"]]
    assert await ids(status="active") == []
    r = await client.get(URL, params={"limit": 1}, headers=h)
    assert len(r.json()["items"]) == 1
    r = await client.get(URL, params={"cursor": r.json()["next_cursor"]}, headers=h)
    assert [a["id"] for a in r.json()["items"]] == [ana["id"]]
    for params, field in (
        ({"status": "sleeping"}, "query.status"),
        ({"skill_id": "x"}, "query.skill_id"),
        ({"team": ""}, "query.team"),
        ({"team": "a\x00b"}, "query.team"),
        ({"limit": 0}, "query.limit"),
    ):
        r = await client.get(URL, params=params, headers=h)
        assert r.status_code == 422 and r.json()["field"] == field


async def test_another_tenant_never_sees_or_references_our_agents(client, app):
    a, b = await create_tenant(client), await create_tenant(client)
    skill_a = await _skill(client, a, "Billing")
    profile_a = (
        await client.post("/v1/routing-profiles", json={"name": "Voice"}, headers=a["headers"])
    ).json()["id"]
    sup_a = await create_user(app, a, "supervisor")
    agent_a = await invite(client, a, team="Billing")

    # B may use the same team and skill names; it sees only its own agents.
    skill_b = await _skill(client, b, "Billing")
    await invite(client, b, team="Billing", skills=[{"skill_id": skill_b, "proficiency": 2}])
    listed = (await client.get(URL, headers=b["headers"])).json()["items"]
    assert [x["id"] for x in listed] != [agent_a["id"]] and len(listed) == 1

    for method, path in (
        ("GET", f"{URL}/{agent_a['id']}"),
        ("PATCH", f"{URL}/{agent_a['id']}"),
        ("DELETE", f"{URL}/{agent_a['id']}"),
        ("POST", f"{URL}/{agent_a['id']}/invitation"),
    ):
        r = await client.request(
            method, path, headers=b["headers"], json={"team": "x"} if method == "PATCH" else None
        )
        assert r.status_code == 404 and r.json()["code"] == "agent-not-found", (method, path)

    # A's skill, profile and supervisor are as unknown to B as made-up ids.
    for fields, field, code in (
        (
            {"skills": [{"skill_id": skill_a, "proficiency": 1}]},
            "body.skills.0.skill_id",
            "unknown-skill",
        ),
        ({"routing_profile_id": profile_a}, "body.routing_profile_id", "unknown-routing-profile"),
        ({"supervisor_id": sup_a["id"]}, "body.supervisor_id", "unknown-supervisor"),
    ):
        body = {"email": "new@example.com", "display_name": "New"} | fields
        r = await client.post(URL, json=body, headers=b["headers"])
        assert r.status_code == 422, r.text
        assert (r.json()["field"], r.json()["code"]) == (field, code)
        r = await client.patch(f"{URL}/{listed[0]['id']}", json=fields, headers=b["headers"])
        assert (r.status_code, r.json()["code"]) == (422, code)
    # An email is one login on the whole platform.
    r = await client.post(
        URL, json={"email": agent_a["email"], "display_name": "Copy"}, headers=b["headers"]
    )
    assert r.status_code == 409 and r.json()["code"] == "email-taken"
    assert r.json()["field"] == "body.email"
    assert (await client.get(f"{URL}/{agent_a['id']}", headers=a["headers"])).status_code == 200


BAD_INVITES = [
    ({"email": "not-an-email"}, "body.email", "validation-failed"),
    ({"email": None}, "body.email", "validation-failed"),
    ({"display_name": ""}, "body.display_name", "validation-failed"),
    ({"display_name": "a\x00b"}, "body.display_name", "validation-failed"),
    ({"display_name": "x" * 201}, "body.display_name", "validation-failed"),
    ({"team": "t" * 101}, "body.team", "validation-failed"),
    ({"team": "  "}, "body.team", "validation-failed"),
    ({"routing_profile_id": "voice"}, "body.routing_profile_id", "validation-failed"),
    ({"routing_profile_id": "{unknown}"}, "body.routing_profile_id", "unknown-routing-profile"),
    ({"supervisor_id": "{unknown}"}, "body.supervisor_id", "unknown-supervisor"),
    ({"supervisor_id": "{agent_user}"}, "body.supervisor_id", "invalid-supervisor"),
    ({"skills": [{"skill_id": "{skill}"}]}, "body.skills.0.proficiency", "validation-failed"),
    (
        {"skills": [{"skill_id": "{skill}", "proficiency": 0}]},
        "body.skills.0.proficiency",
        "validation-failed",
    ),
    (
        {"skills": [{"skill_id": "{skill}", "proficiency": 6}]},
        "body.skills.0.proficiency",
        "validation-failed",
    ),
    (
        {"skills": [{"skill_id": "{skill}", "proficiency": "5"}]},
        "body.skills.0.proficiency",
        "validation-failed",
    ),
    (
        {"skills": [{"skill_id": "{unknown}", "proficiency": 3}]},
        "body.skills.0.skill_id",
        "unknown-skill",
    ),
    (
        {
            "skills": [
                {"skill_id": "{skill}", "proficiency": 3},
                {"skill_id": "{skill}", "proficiency": 1},
            ]
        },
        "body.skills.1.skill_id",
        "duplicate-skill",
    ),
    ({"skills": "Billing"}, "body.skills", "validation-failed"),
    ({"role": "admin"}, "body.role", "validation-failed"),
    ({"status": "active"}, "body.status", "validation-failed"),
    ({"email": "{owner}"}, "body.email", "email-taken"),
]


async def test_bad_invites_name_the_field_and_write_nothing(client, app, admin_conn):
    t = await create_tenant(client)
    skill = await _skill(client, t, "Billing")
    plain = await create_user(app, t, "agent")
    values = {
        "{unknown}": str(uuid.uuid4()),
        "{skill}": skill,
        "{agent_user}": plain["id"],
        "{owner}": t["email"],
    }

    def fill(v):
        if isinstance(v, dict):
            return {k: fill(x) for k, x in v.items()}
        if isinstance(v, list):
            return [fill(x) for x in v]
        return values.get(v, v) if isinstance(v, str) else v

    for fields, field, code in BAD_INVITES:
        body = {"email": "new.agent@example.com", "display_name": "New Agent"} | fill(fields)
        r = await client.post(URL, json=body, headers=t["headers"])
        assert r.status_code in (409, 422), (fields, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert (r.json()["field"], r.json()["code"]) == (field, code), fields
    assert await admin_conn.fetchval("SELECT count(*) FROM agents") == 0
    assert await admin_conn.fetchval("SELECT count(*) FROM users") == 2
    assert await invitation_mails(client, t, "new.agent@example.com") == []


async def test_bad_updates_name_the_field_and_change_nothing(client, app):
    t = await create_tenant(client)
    h = t["headers"]
    skill = await _skill(client, t, "Billing")
    agent = await invite(client, t, skills=[{"skill_id": skill, "proficiency": 2}])
    for body, status, field, code in (
        ({"status": "invited"}, 422, "body.status", "validation-failed"),
        ({"status": "disabled"}, 409, "body.status", "agent-still-invited"),
        ({"status": None}, 422, "body.status", "validation-failed"),
        ({"skills": None}, 422, "body.skills", "validation-failed"),
        ({"display_name": None}, 422, "body.display_name", "validation-failed"),
        (
            {"skills": [{"skill_id": skill, "proficiency": 9}]},
            422,
            "body.skills.0.proficiency",
            "validation-failed",
        ),
        ({"supervisor_id": agent["id"]}, 422, "body.supervisor_id", "invalid-supervisor"),
        ({"email": "changed@example.com"}, 422, "body.email", "validation-failed"),
        ({"role": "owner"}, 422, "body.role", "validation-failed"),
        (
            {"team": "ok", "routing_profile_id": str(uuid.uuid4())},
            422,
            "body.routing_profile_id",
            "unknown-routing-profile",
        ),
    ):
        r = await client.patch(f"{URL}/{agent['id']}", json=body, headers=h)
        assert r.status_code == status, (body, r.text)
        assert (r.json()["field"], r.json()["code"]) == (field, code), body
    r = await client.get(f"{URL}/{agent['id']}", headers=h)
    assert r.json() == agent and r.headers["etag"] == '"1"'
    assert (await client.get(f"{URL}/nope", headers=h)).json()["field"] == "path.agent_id"


async def test_the_eleventh_agent_on_a_trial_plan_is_refused(client, admin_conn):
    t = await create_tenant(client)
    agents = [await invite(client, t) for _ in range(10)]
    r = await client.post(
        URL, json={"email": "eleventh@example.com", "display_name": "Eleven"}, headers=t["headers"]
    )
    assert r.status_code == 403 and r.json()["code"] == "quota-exceeded"
    assert (r.json()["limit"], r.json()["current"]) == (10, 10)
    assert await admin_conn.fetchval("SELECT count(*) FROM agents") == 10
    assert await admin_conn.fetchval("SELECT count(*) FROM users") == 11
    assert await invitation_mails(client, t, "eleventh@example.com") == []
    quotas = (await client.get("/v1/quotas", headers=t["headers"])).json()["quotas"]
    assert {"resource": "agents", "limit": 10, "used": 10} in quotas
    # Deleting one frees its seat.
    assert (
        await client.delete(f"{URL}/{agents[0]['id']}", headers=t["headers"])
    ).status_code == 204
    r = await client.post(
        URL, json={"email": "eleventh@example.com", "display_name": "Eleven"}, headers=t["headers"]
    )
    assert r.status_code == 201


async def test_concurrent_invites_never_pass_the_quota(client, admin_conn):
    t = await create_tenant(client)
    for _ in range(8):
        await invite(client, t)
    rs = await asyncio.gather(
        *[
            client.post(
                URL,
                json={"email": f"race{i}@example.com", "display_name": "R"},
                headers=t["headers"],
            )
            for i in range(4)
        ]
    )
    assert sorted(r.status_code for r in rs) == [201, 201, 403, 403]
    assert await admin_conn.fetchval("SELECT count(*) FROM agents") == 10


async def test_idempotency_key_replays_without_a_second_invitation(client, admin_conn):
    t = await create_tenant(client)
    body = {"email": "once@example.com", "display_name": "Once"}
    h = t["headers"] | {"Idempotency-Key": "invite-once"}
    first = await client.post(URL, json=body, headers=h)
    again = await client.post(URL, json=body, headers=h)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert await admin_conn.fetchval("SELECT count(*) FROM agents") == 1
    assert len(await invitation_mails(client, t, "once@example.com")) == 1


async def test_supervisors_manage_agents_but_not_other_roles(client, app):
    t = await create_tenant(client)
    sup = await create_user(app, t, "supervisor")
    sh = (await login(client, sup["email"]))["headers"]
    skill = await _skill(client, t, "Chat")
    r = await client.post(
        URL,
        json={"email": "by.sup@example.com", "display_name": "Sup's", "supervisor_id": sup["id"]},
        headers=sh,
    )
    assert r.status_code == 201, r.text
    agent_id = r.json()["id"]
    r = await client.patch(
        f"{URL}/{agent_id}",
        json={"team": "Chat", "skills": [{"skill_id": skill, "proficiency": 3}]},
        headers=sh,
    )
    assert r.status_code == 200 and r.json()["team"] == "Chat"
    r = await client.post(
        URL, json={"email": "boss@example.com", "display_name": "Boss", "role": "admin"}, headers=sh
    )
    assert r.status_code == 422 and r.json()["field"] == "body.role"
    user = await create_user(app, t, "agent")
    ah = (await login(client, user["email"]))["headers"]
    r = await client.post(URL, json={"email": "x@example.com", "display_name": "X"}, headers=ah)
    assert r.status_code == 403 and r.json()["required_scope"] == "agents:write"


async def test_skills_and_supervisors_in_use(client, app):
    t = await create_tenant(client)
    h = t["headers"]
    skill = await _skill(client, t, "Billing")
    await invite(client, t, skills=[{"skill_id": skill, "proficiency": 3}])
    r = await client.delete(f"/v1/skills/{skill}", headers=h)
    assert r.status_code == 409 and r.json()["code"] == "skill-in-use"
