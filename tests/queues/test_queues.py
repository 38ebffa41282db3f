"""Queues through the API, as a tenant would use them."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from tests.conftest import create_tenant, create_user, login

Tenant = dict[str, Any]


async def make_skill(client: httpx.AsyncClient, t: Tenant, name: str) -> str:
    r = await client.post("/v1/skills", json={"name": name}, headers=t["headers"])
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def make_queue(client: httpx.AsyncClient, t: Tenant, name: str, **fields: Any) -> Any:
    body = {"name": name, "channels": ["chat"]} | fields
    r = await client.post("/v1/queues", json=body, headers=t["headers"])
    assert r.status_code == 201, r.text
    return r.json()


async def make_hours(client: httpx.AsyncClient, t: Tenant, name: str = "Office") -> str:
    r = await client.post(
        "/v1/business-hours",
        json={"name": name, "timezone": "Europe/Paris", "weekly": {"mon": [["09:00", "17:00"]]}},
        headers=t["headers"],
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def make_routing_profile(app: Any, t: Tenant, name: str, queue_ids: list[str]) -> str:
    """Factory: a routing profile serving ``queue_ids``, made through the models (the
    routing-profiles API is another domain's)."""
    from app.db.tenant import bind_tenant, mint_scope
    from app.routing_profiles.models import RoutingProfile, RoutingProfileQueue

    scope = mint_scope(uuid.UUID(t["tenant"]["id"]))
    async with app.state.session_factory() as session, session.begin():
        await bind_tenant(session, scope)
        profile = RoutingProfile(tenant_id=scope.tenant_id, name=name)
        session.add(profile)
        await session.flush()
        for q in queue_ids:
            session.add(
                RoutingProfileQueue(
                    tenant_id=scope.tenant_id, routing_profile_id=profile.id, queue_id=uuid.UUID(q)
                )
            )
    return str(profile.id)


async def test_a_queue_with_its_whole_policy_round_trips(client, admin_conn):
    t = await create_tenant(client)
    h = t["headers"]
    billing, spanish = (
        await make_skill(client, t, "Billing"),
        await make_skill(client, t, "Spanish"),
    )
    hours = await make_hours(client, t)
    backup = await make_queue(client, t, "Backup", channels=["voice", "chat"])
    body = {
        "name": "Billing (ES)",
        "description": "Invoices and refunds",
        "channels": ["voice", "chat", "email"],
        "business_hours_id": hours,
        "service_level_percent": 90,
        "service_level_seconds": 30,
        "max_waiting": 25,
        "max_wait_seconds": 900,
        "overflow_queue_id": backup["id"],
        "overflow_to_crowd": True,
        "required_skills": [
            {"skill_id": billing, "min_proficiency": 4},
            {"skill_id": spanish, "min_proficiency": 3},
        ],
        "relaxation_steps": [
            {"after_seconds": 30, "action": "lower_minimum", "skill_id": billing, "to": 3},
            {"after_seconds": 60, "action": "lower_minimum", "skill_id": billing, "to": 2},
            {"after_seconds": 90, "action": "drop_skill", "skill_id": spanish},
            {"after_seconds": 120, "action": "add_overflow", "target": {"queue_id": backup["id"]}},
            {"after_seconds": 300, "action": "add_overflow", "target": {"crowd": True}},
        ],
        "agent_selection": "most_skilled",
        "sticky_timeout_seconds": 120,
        "wrap_up_seconds": 45,
        "wrap_up_codes": ["Resolved", "Refund issued"],
    }
    r = await client.post("/v1/queues", json=body, headers=h)
    assert r.status_code == 201, r.text
    assert r.headers["etag"] == '"1"'
    queue = r.json()
    steps_read = [
        {"to": None, "target": None} | s
        if s["action"] != "add_overflow"
        else {"skill_id": None, "to": None}
        | s
        | {"target": {"queue_id": None, "crowd": None} | s["target"]}
        for s in body["relaxation_steps"]
    ]
    assert {k: queue[k] for k in body} == body | {
        "required_skills": sorted(body["required_skills"], key=lambda s: s["skill_id"]),
        "relaxation_steps": steps_read,
    }
    r = await client.get(f"/v1/queues/{queue['id']}", headers=h)
    assert r.json() == queue and r.headers["etag"] == '"1"'
    assert await admin_conn.fetchval("SELECT count(*) FROM queue_skills") == 2

    # What a GET returns can be sent back unchanged: no change, same version.
    writable = {k: queue[k] for k in body}
    r = await client.patch(f"/v1/queues/{queue['id']}", json=writable, headers=h)
    assert r.status_code == 200 and r.headers["etag"] == '"1"'
    # And it is a valid create body too (tenants as code).
    r = await client.post("/v1/queues", json=writable | {"name": "Billing (ES) 2"}, headers=h)
    assert r.status_code == 201, r.text


async def test_defaults_and_updates_with_etags(client, admin_conn):
    t = await create_tenant(client)
    h = t["headers"]
    skill = await make_skill(client, t, "Sales")
    queue = await make_queue(client, t, "Sales")
    assert {k: queue[k] for k in queue if k not in ("id", "created_at", "updated_at")} == {
        "name": "Sales",
        "description": None,
        "channels": ["chat"],
        "business_hours_id": None,
        "service_level_percent": 80,
        "service_level_seconds": 20,
        "max_waiting": None,
        "max_wait_seconds": None,
        "overflow_queue_id": None,
        "overflow_to_crowd": False,
        "required_skills": [],
        "relaxation_steps": [],
        "agent_selection": "longest_idle",
        "sticky_timeout_seconds": 0,
        "wrap_up_seconds": 30,
        "wrap_up_codes": [],
        "version": 1,
    }
    url = f"/v1/queues/{queue['id']}"
    r = await client.patch(
        url,
        json={"required_skills": [{"skill_id": skill, "min_proficiency": 2}], "max_waiting": 10},
        headers=h | {"If-Match": '"1"'},
    )
    assert r.status_code == 200 and r.headers["etag"] == '"2"'
    assert r.json()["required_skills"] == [{"skill_id": skill, "min_proficiency": 2}]
    # Same skill, new minimum.
    r = await client.patch(
        url, json={"required_skills": [{"skill_id": skill, "min_proficiency": 5}]}, headers=h
    )
    assert r.headers["etag"] == '"3"'
    assert r.json()["required_skills"] == [{"skill_id": skill, "min_proficiency": 5}]
    # Null clears a nullable field.
    r = await client.patch(url, json={"max_waiting": None}, headers=h | {"If-Match": '"3"'})
    assert r.status_code == 200 and r.json()["max_waiting"] is None
    assert r.headers["etag"] == '"4"'
    # A stale ETag answers 412 and changes nothing.
    r = await client.patch(url, json={"name": "Stale"}, headers=h | {"If-Match": '"3"'})
    assert r.status_code == 412 and r.json()["current_etag"] == '"4"'
    assert (await client.get(url, headers=h)).json()["name"] == "Sales"
    # A no-op keeps the version.
    r = await client.patch(url, json={"max_waiting": None, "channels": ["chat"]}, headers=h)
    assert r.headers["etag"] == '"4"'
    # Dropping every required skill deletes their rows.
    r = await client.patch(url, json={"required_skills": []}, headers=h)
    assert r.json()["required_skills"] == [] and r.headers["etag"] == '"5"'
    assert await admin_conn.fetchval("SELECT count(*) FROM queue_skills") == 0

    assert (await client.delete(url, headers=h | {"If-Match": '"4"'})).status_code == 412
    assert (await client.delete(url, headers=h | {"If-Match": '"5"'})).status_code == 204
    assert (await client.get(url, headers=h)).status_code == 404
    actions = {
        r["action"]
        for r in await admin_conn.fetch("SELECT action FROM audit_events WHERE target_type='queue'")
    }
    assert actions == {"queue.create", "queue.update", "queue.delete"}


async def test_bad_input_names_the_field_and_creates_nothing(client, admin_conn):
    t = await create_tenant(client)
    s1, s2 = await make_skill(client, t, "One"), await make_skill(client, t, "Two")
    nowhere = str(uuid.uuid4())
    base = {
        "name": "Q",
        "channels": ["chat"],
        "required_skills": [{"skill_id": s1, "min_proficiency": 3}],
    }

    def steps(*items: dict[str, Any]) -> dict[str, Any]:
        return base | {"relaxation_steps": list(items)}

    lower = {"after_seconds": 30, "action": "lower_minimum", "skill_id": s1, "to": 2}
    drop = {"after_seconds": 60, "action": "drop_skill", "skill_id": s1}
    crowd = {"after_seconds": 90, "action": "add_overflow", "target": {"crowd": True}}
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"channels": ["chat"]}, "body.name", "validation-failed"),
        ({"name": "Q"}, "body.channels", "validation-failed"),
        (base | {"name": "\t"}, "body.name", "validation-failed"),
        (base | {"description": "a\x00b"}, "body.description", "validation-failed"),
        (base | {"channels": []}, "body.channels", "validation-failed"),
        (base | {"channels": "chat"}, "body.channels", "validation-failed"),
        (base | {"channels": ["chat", "fax"]}, "body.channels.1", "validation-failed"),
        (base | {"channels": ["sms", "email", "sms"]}, "body.channels.2", "validation-failed"),
        (base | {"service_level_percent": 0}, "body.service_level_percent", "validation-failed"),
        (base | {"service_level_percent": 101}, "body.service_level_percent", "validation-failed"),
        (
            base | {"service_level_percent": "80%"},
            "body.service_level_percent",
            "validation-failed",
        ),
        (base | {"service_level_seconds": 0}, "body.service_level_seconds", "validation-failed"),
        (
            base | {"service_level_seconds": 2**40},
            "body.service_level_seconds",
            "validation-failed",
        ),
        (base | {"max_waiting": 0}, "body.max_waiting", "validation-failed"),
        (base | {"max_wait_seconds": -5}, "body.max_wait_seconds", "validation-failed"),
        (base | {"overflow_to_crowd": "maybe"}, "body.overflow_to_crowd", "validation-failed"),
        (base | {"agent_selection": "random"}, "body.agent_selection", "validation-failed"),
        (base | {"sticky_timeout_seconds": -1}, "body.sticky_timeout_seconds", "validation-failed"),
        (base | {"wrap_up_seconds": 3601}, "body.wrap_up_seconds", "validation-failed"),
        (base | {"wrap_up_codes": ["Done", " "]}, "body.wrap_up_codes.1", "validation-failed"),
        (base | {"wrap_up_codes": ["Done", " done"]}, "body.wrap_up_codes.1", "validation-failed"),
        (base | {"wrap_up_codes": ["x" * 65]}, "body.wrap_up_codes.0", "validation-failed"),
        (
            base | {"wrap_up_codes": [f"c{i}" for i in range(51)]},
            "body.wrap_up_codes",
            "validation-failed",
        ),
        (base | {"priority": 1}, "body.priority", "validation-failed"),
        # References: malformed, or unknown in this tenant (422, not 404).
        (base | {"business_hours_id": "nope"}, "body.business_hours_id", "validation-failed"),
        (base | {"business_hours_id": nowhere}, "body.business_hours_id", "unknown-reference"),
        (base | {"overflow_queue_id": nowhere}, "body.overflow_queue_id", "unknown-reference"),
        (
            base | {"required_skills": [{"skill_id": s1}, {"skill_id": nowhere}]},
            "body.required_skills.1.skill_id",
            "unknown-reference",
        ),
        (
            base | {"required_skills": [{"skill_id": s1, "min_proficiency": 6}]},
            "body.required_skills.0.min_proficiency",
            "validation-failed",
        ),
        (
            base | {"required_skills": [{"skill_id": s1, "min_proficiency": 0}]},
            "body.required_skills.0.min_proficiency",
            "validation-failed",
        ),
        (
            base | {"required_skills": [{"skill_id": s1}, {"skill_id": s2}, {"skill_id": s1}]},
            "body.required_skills.2.skill_id",
            "validation-failed",
        ),
        # Relaxation steps.
        (
            steps(lower | {"after_seconds": 0}),
            "body.relaxation_steps.0.after_seconds",
            "validation-failed",
        ),
        (
            steps(lower, drop | {"after_seconds": 30}),
            "body.relaxation_steps.1.after_seconds",
            "validation-failed",
        ),
        (steps(drop, lower), "body.relaxation_steps.1.after_seconds", "validation-failed"),
        (steps(lower | {"action": "shout"}), "body.relaxation_steps.0.action", "validation-failed"),
        (
            steps({"after_seconds": 30, "action": "lower_minimum", "skill_id": s1}),
            "body.relaxation_steps.0.to",
            "validation-failed",
        ),
        (steps(lower | {"to": 6}), "body.relaxation_steps.0.to", "validation-failed"),
        (steps(lower | {"to": 3}), "body.relaxation_steps.0.to", "validation-failed"),
        (
            steps(lower, lower | {"after_seconds": 45, "to": 2}),
            "body.relaxation_steps.1.to",
            "validation-failed",
        ),
        (steps(lower | {"skill_id": s2}), "body.relaxation_steps.0.skill_id", "validation-failed"),
        (steps(drop | {"skill_id": s2}), "body.relaxation_steps.0.skill_id", "validation-failed"),
        (
            steps(drop, drop | {"after_seconds": 61}),
            "body.relaxation_steps.1.skill_id",
            "validation-failed",
        ),
        (
            steps(drop, lower | {"after_seconds": 61}),
            "body.relaxation_steps.1.skill_id",
            "validation-failed",
        ),
        (
            steps(drop | {"target": {"crowd": True}}),
            "body.relaxation_steps.0.target",
            "validation-failed",
        ),
        (steps(drop | {"to": 1}), "body.relaxation_steps.0.to", "validation-failed"),
        (
            steps({"after_seconds": 5, "action": "add_overflow"}),
            "body.relaxation_steps.0.target",
            "validation-failed",
        ),
        (steps(crowd | {"skill_id": s1}), "body.relaxation_steps.0.skill_id", "validation-failed"),
        (steps(crowd | {"target": {}}), "body.relaxation_steps.0.target", "validation-failed"),
        (
            steps(crowd | {"target": {"crowd": False}}),
            "body.relaxation_steps.0.target.crowd",
            "validation-failed",
        ),
        (
            steps(crowd | {"target": {"crowd": True, "queue_id": nowhere}}),
            "body.relaxation_steps.0.target",
            "validation-failed",
        ),
        (
            steps(lower, crowd | {"target": {"queue_id": nowhere}}),
            "body.relaxation_steps.1.target.queue_id",
            "unknown-reference",
        ),
        (
            steps(*[crowd | {"after_seconds": i + 1} for i in range(21)]),
            "body.relaxation_steps",
            "validation-failed",
        ),
    ]
    for body, field, code in cases:
        r = await client.post("/v1/queues", json=body, headers=t["headers"])
        assert r.status_code == 422, (body, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert (r.json()["field"], r.json()["code"]) == (field, code), (body, r.json())
    assert await admin_conn.fetchval("SELECT count(*) FROM queues") == 0
    assert await admin_conn.fetchval("SELECT count(*) FROM queue_skills") == 0


async def test_bad_updates_name_the_field_and_change_nothing(client):
    t = await create_tenant(client)
    h = t["headers"]
    s1, s2 = await make_skill(client, t, "One"), await make_skill(client, t, "Two")
    queue = await make_queue(
        client,
        t,
        "Main",
        required_skills=[{"skill_id": s1, "min_proficiency": 3}],
        relaxation_steps=[
            {"after_seconds": 30, "action": "lower_minimum", "skill_id": s1, "to": 2}
        ],
    )
    url = f"/v1/queues/{queue['id']}"
    for patch, field in (
        ({"channels": None}, "body.channels"),
        ({"name": None}, "body.name"),
        ({"required_skills": None}, "body.required_skills"),
        ({"overflow_queue_id": queue["id"]}, "body.overflow_queue_id"),
        (
            {
                "relaxation_steps": [
                    {
                        "after_seconds": 5,
                        "action": "add_overflow",
                        "target": {"queue_id": queue["id"]},
                    }
                ]
            },
            "body.relaxation_steps.0.target.queue_id",
        ),
        # The stored step lowers One to 2; without One, or with its minimum at 2, it
        # no longer fits.
        ({"required_skills": [{"skill_id": s2}]}, "body.required_skills"),
        ({"required_skills": [{"skill_id": s1, "min_proficiency": 2}]}, "body.required_skills"),
        (
            {"relaxation_steps": [{"after_seconds": 5, "action": "drop_skill", "skill_id": s2}]},
            "body.relaxation_steps.0.skill_id",
        ),
    ):
        r = await client.patch(url, json=patch, headers=h)
        assert r.status_code == 422, (patch, r.text)
        assert r.json()["field"] == field, (patch, r.json())
    after = await client.get(url, headers=h)
    assert after.json() == queue and after.headers["etag"] == '"1"'
    # Changing both together is fine.
    r = await client.patch(
        url, json={"required_skills": [{"skill_id": s2}], "relaxation_steps": []}, headers=h
    )
    assert r.status_code == 200 and r.json()["required_skills"] == [
        {"skill_id": s2, "min_proficiency": 1}
    ]


async def test_overflow_loops_are_refused(client):
    t = await create_tenant(client)
    h = t["headers"]
    a = await make_queue(client, t, "A")
    b = await make_queue(client, t, "B", overflow_queue_id=a["id"])
    c = await make_queue(client, t, "C", overflow_queue_id=b["id"])
    # A -> C would close A -> C -> B -> A.
    r = await client.patch(f"/v1/queues/{a['id']}", json={"overflow_queue_id": c["id"]}, headers=h)
    assert r.status_code == 422 and r.json()["code"] == "overflow-loop"
    assert r.json()["field"] == "body.overflow_queue_id"
    r = await client.patch(f"/v1/queues/{a['id']}", json={"overflow_queue_id": b["id"]}, headers=h)
    assert r.status_code == 422 and r.json()["code"] == "overflow-loop"
    assert (await client.get(f"/v1/queues/{a['id']}", headers=h)).json()[
        "overflow_queue_id"
    ] is None
    # A chain without a loop is fine.
    d = await make_queue(client, t, "D")
    r = await client.patch(f"/v1/queues/{a['id']}", json={"overflow_queue_id": d["id"]}, headers=h)
    assert r.status_code == 200


async def test_concurrent_edits_cannot_close_an_overflow_loop(client):
    t = await create_tenant(client)
    h = t["headers"]
    a, b = await make_queue(client, t, "A"), await make_queue(client, t, "B")
    rs = await asyncio.gather(
        client.patch(f"/v1/queues/{a['id']}", json={"overflow_queue_id": b["id"]}, headers=h),
        client.patch(f"/v1/queues/{b['id']}", json={"overflow_queue_id": a["id"]}, headers=h),
    )
    assert sorted(r.status_code for r in rs) == [200, 422]


async def test_tenants_never_see_or_reference_each_others_resources(client):
    a, b = await create_tenant(client), await create_tenant(client)
    a_skill = await make_skill(client, a, "Billing")
    a_hours = await make_hours(client, a)
    a_queue = await make_queue(client, a, "Support")
    # B may use the same names.
    b_skill = await make_skill(client, b, "Billing")
    b_queue = await make_queue(client, b, "Support", required_skills=[{"skill_id": b_skill}])
    assert [
        q["id"] for q in (await client.get("/v1/queues", headers=b["headers"])).json()["items"]
    ] == [b_queue["id"]]
    # A's ids are unknown to B: 404 on the queue itself, 422 as a reference.
    url = f"/v1/queues/{a_queue['id']}"
    for method in ("GET", "PATCH", "DELETE"):
        r = await client.request(
            method, url, json={"name": "x"} if method == "PATCH" else None, headers=b["headers"]
        )
        assert r.status_code == 404 and r.json()["code"] == "queue-not-found", method
    for body, field in (
        ({"business_hours_id": a_hours}, "body.business_hours_id"),
        ({"overflow_queue_id": a_queue["id"]}, "body.overflow_queue_id"),
        ({"required_skills": [{"skill_id": a_skill}]}, "body.required_skills.0.skill_id"),
        (
            {
                "relaxation_steps": [
                    {
                        "after_seconds": 5,
                        "action": "add_overflow",
                        "target": {"queue_id": a_queue["id"]},
                    }
                ]
            },
            "body.relaxation_steps.0.target.queue_id",
        ),
    ):
        r = await client.post(
            "/v1/queues", json={"name": "New", "channels": ["sms"]} | body, headers=b["headers"]
        )
        assert r.status_code == 422 and r.json()["code"] == "unknown-reference", body
        assert r.json()["field"] == field
        r = await client.patch(f"/v1/queues/{b_queue['id']}", json=body, headers=b["headers"])
        assert r.status_code == 422 and r.json()["field"] == field, body
    r = await client.get(url, headers=a["headers"])
    assert r.json()["name"] == "Support" and r.headers["etag"] == '"1"'


async def test_names_are_unique_per_tenant(client):
    t = await create_tenant(client)
    await make_queue(client, t, "Billing")
    other = await make_queue(client, t, "Sales")
    r = await client.post(
        "/v1/queues", json={"name": " BILLING ", "channels": ["chat"]}, headers=t["headers"]
    )
    assert r.status_code == 409 and r.json()["code"] == "queue-name-taken"
    assert r.json()["field"] == "body.name"
    r = await client.patch(
        f"/v1/queues/{other['id']}", json={"name": "billing"}, headers=t["headers"]
    )
    assert r.status_code == 409 and r.json()["code"] == "queue-name-taken"
    rs = await asyncio.gather(
        *[
            client.post(
                "/v1/queues", json={"name": "Refunds", "channels": ["chat"]}, headers=t["headers"]
            )
            for _ in range(3)
        ]
    )
    assert sorted(r.status_code for r in rs) == [201, 409, 409]


async def test_queues_in_use_cannot_be_deleted(client, app, admin_conn):
    t = await create_tenant(client)
    h = t["headers"]
    skill = await make_skill(client, t, "Billing")
    target = await make_queue(client, t, "Target", required_skills=[{"skill_id": skill}])
    by_overflow = await make_queue(client, t, "Front", overflow_queue_id=target["id"])
    by_step = await make_queue(
        client,
        t,
        "Night",
        relaxation_steps=[
            {"after_seconds": 60, "action": "add_overflow", "target": {"queue_id": target["id"]}}
        ],
    )
    profile = await make_routing_profile(app, t, "Day shift", [target["id"]])
    url = f"/v1/queues/{target['id']}"
    r = await client.delete(url, headers=h)
    assert r.status_code == 409 and r.json()["code"] == "queue-in-use"
    assert sorted(r.json()["used_by"], key=lambda u: u["name"]) == [
        {"type": "routing_profile", "id": profile, "name": "Day shift"},
        {"type": "queue", "id": by_overflow["id"], "name": "Front", "as": "overflow"},
        {"type": "queue", "id": by_step["id"], "name": "Night", "as": "relaxation step"},
    ]
    # The skill is in use by the queue, too.
    r = await client.delete(f"/v1/skills/{skill}", headers=h)
    assert r.status_code == 409 and r.json()["code"] == "skill-in-use"

    await admin_conn.execute("DELETE FROM routing_profile_queues")
    await client.patch(
        f"/v1/queues/{by_overflow['id']}", json={"overflow_queue_id": None}, headers=h
    )
    r = await client.delete(url, headers=h)
    assert r.status_code == 409 and [u["name"] for u in r.json()["used_by"]] == ["Night"]
    await client.patch(f"/v1/queues/{by_step['id']}", json={"relaxation_steps": []}, headers=h)
    assert (await client.delete(url, headers=h)).status_code == 204
    # Its required skills went with it; the skill is free now.
    assert await admin_conn.fetchval("SELECT count(*) FROM queue_skills") == 0
    assert (await client.delete(f"/v1/skills/{skill}", headers=h)).status_code == 204


async def test_the_plan_quota_stops_the_sixth_queue_and_writes_nothing(client, admin_conn):
    t = await create_tenant(client)  # trial: 5 queues
    h = t["headers"]
    skill = await make_skill(client, t, "Billing")
    for i in range(5):
        await make_queue(client, t, f"Q{i}")
    r = await client.post(
        "/v1/queues",
        json={"name": "Q5", "channels": ["chat"], "required_skills": [{"skill_id": skill}]},
        headers=h | {"Idempotency-Key": "sixth"},
    )
    assert r.status_code == 403, r.text
    assert r.json()["code"] == "quota-exceeded"
    assert (r.json()["resource"], r.json()["limit"], r.json()["current"]) == ("queues", 5, 5)
    assert await admin_conn.fetchval("SELECT count(*) FROM queues") == 5
    assert await admin_conn.fetchval("SELECT count(*) FROM queue_skills") == 0
    assert await admin_conn.fetchval("SELECT count(*) FROM idempotency_keys") == 0
    assert (
        await admin_conn.fetchval("SELECT count(*) FROM audit_events WHERE action='queue.create'")
        == 5
    )
    quotas = (await client.get("/v1/quotas", headers=h)).json()["quotas"]
    assert {"resource": "queues", "limit": 5, "used": 5} in quotas
    # Freeing a slot lets the same request through.
    first = (await client.get("/v1/queues", params={"limit": 1}, headers=h)).json()["items"][0]
    assert (await client.delete(f"/v1/queues/{first['id']}", headers=h)).status_code == 204
    r = await client.post(
        "/v1/queues",
        json={"name": "Q5", "channels": ["chat"], "required_skills": [{"skill_id": skill}]},
        headers=h | {"Idempotency-Key": "sixth"},
    )
    assert r.status_code == 201


async def test_concurrent_creates_at_the_limit_never_exceed_it(client, admin_conn):
    t = await create_tenant(client)
    for i in range(3):
        await make_queue(client, t, f"Q{i}")
    rs = await asyncio.gather(
        *[
            client.post(
                "/v1/queues", json={"name": f"Race {i}", "channels": ["chat"]}, headers=t["headers"]
            )
            for i in range(6)
        ]
    )
    assert sorted(r.status_code for r in rs) == [201, 201, 403, 403, 403, 403]
    assert await admin_conn.fetchval("SELECT count(*) FROM queues") == 5


async def test_idempotency_key_replays_the_first_answer(client, admin_conn):
    t = await create_tenant(client)
    h = t["headers"] | {"Idempotency-Key": "queue-1"}
    body = {"name": "Support", "channels": ["chat", "email"]}
    first = await client.post("/v1/queues", json=body, headers=h)
    again = await client.post("/v1/queues", json=body, headers=h)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert await admin_conn.fetchval("SELECT count(*) FROM queues") == 1
    r = await client.post("/v1/queues", json=body | {"name": "Other"}, headers=h)
    assert r.status_code == 422 and r.json()["code"] == "idempotency-key-reused"


async def test_lists_are_cursor_paginated(client):
    t = await create_tenant(client)
    skill = await make_skill(client, t, "Billing")
    ids = [
        (await make_queue(client, t, f"Q{i}", required_skills=[{"skill_id": skill}]))["id"]
        for i in range(3)
    ]
    page1 = (await client.get("/v1/queues", params={"limit": 2}, headers=t["headers"])).json()
    assert [q["id"] for q in page1["items"]] == [ids[2], ids[1]]
    assert all(
        q["required_skills"] == [{"skill_id": skill, "min_proficiency": 1}] for q in page1["items"]
    )
    page2 = (
        await client.get(
            "/v1/queues", params={"limit": 2, "cursor": page1["next_cursor"]}, headers=t["headers"]
        )
    ).json()
    assert [q["id"] for q in page2["items"]] == [ids[0]] and page2["next_cursor"] is None


async def test_supervisors_read_queues_but_do_not_write_them(client, app):
    t = await create_tenant(client)
    queue = await make_queue(client, t, "Support")
    sup = await create_user(app, t, "supervisor")
    sh = (await login(client, sup["email"]))["headers"]
    assert (await client.get(f"/v1/queues/{queue['id']}", headers=sh)).status_code == 200
    r = await client.patch(f"/v1/queues/{queue['id']}", json={"name": "x"}, headers=sh)
    assert r.status_code == 403 and r.json()["required_scope"] == "queues:write"


def test_the_openapi_schema_documents_every_answer_with_examples(app):
    schema = app.openapi()
    expected = {
        ("/v1/queues", "post"): {"201", "403", "409", "422"},
        ("/v1/queues/{queue_id}", "get"): {"200", "404"},
        ("/v1/queues/{queue_id}", "patch"): {"200", "404", "409", "412", "422"},
        ("/v1/queues/{queue_id}", "delete"): {"204", "404", "409", "412"},
        ("/v1/business-hours", "post"): {"201", "409", "422"},
        ("/v1/business-hours/{hours_id}/status", "get"): {"200", "404", "422"},
        ("/v1/business-hours/{hours_id}", "patch"): {"200", "404", "409", "412", "422"},
        ("/v1/business-hours/{hours_id}", "delete"): {"204", "404", "409", "412"},
    }
    for (path, method), statuses in expected.items():
        responses = schema["paths"][path][method]["responses"]
        assert statuses <= set(responses), (path, method)
        for status in statuses - {"200", "201", "204"}:
            content = responses[status]["content"]["application/problem+json"]
            assert content.get("examples"), (path, method, status)
    components = schema["components"]["schemas"]
    for name in (
        "QueueCreate",
        "QueueUpdate",
        "QueueRead",
        "BusinessHoursCreate",
        "BusinessHoursStatus",
    ):
        assert components[name].get("examples"), name
    # PATCH fields that cannot be null are not documented as nullable.
    assert "anyOf" not in components["QueueUpdate"]["properties"]["channels"]
    assert {"type": "null"} in components["QueueUpdate"]["properties"]["max_waiting"]["anyOf"]
