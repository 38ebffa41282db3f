"""/v1/flows as a tenant's administrator uses it: drafts, publishing, versions."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from app.db.tenant import bind_tenant, mint_scope
from app.flows import service
from app.flows.interpreter import FlowSession, Queue, dtmf, hours, start
from tests.conftest import create_tenant, create_user, login
from tests.flows.conftest import Provision, ivr

PROBLEM_JSON = "application/problem+json"


async def create_flow(
    client: httpx.AsyncClient, tenant: dict[str, Any], **body: Any
) -> dict[str, Any]:
    r = await client.post("/v1/flows", json={"name": "Main line"} | body, headers=tenant["headers"])
    assert r.status_code == 201, r.text
    flow: dict[str, Any] = r.json()
    return flow


async def test_build_publish_and_republish_a_flow(
    client: httpx.AsyncClient, provision: Provision, admin_conn: asyncpg.Connection
) -> None:
    t = await create_tenant(client)
    h = t["headers"]
    ids = await provision(t)
    # A half-built draft saves, and says what stops it from publishing.
    r = await client.post(
        "/v1/flows",
        json={
            "name": "Main line",
            "description": "The number on our website",
            "draft": {"start": "welcome", "nodes": {"welcome": {"type": "say", "text": "Hi"}}},
        },
        headers=h,
    )
    assert r.status_code == 201 and r.headers["etag"] == '"1"'
    flow = r.json()
    assert flow["channel"] == "voice" and flow["published_version"] is None
    assert flow["problems"] == [
        {"path": "nodes.welcome.next", "code": "missing-transition", "message": "is required"}
    ]
    fid = flow["id"]
    r = await client.post(f"/v1/flows/{fid}/publish", headers=h)
    assert r.status_code == 422 and r.json()["code"] == "flow-invalid"

    # Finish the draft; it validates and publishes as version 1.
    r = await client.patch(
        f"/v1/flows/{fid}", json={"draft": ivr(ids)}, headers=h | {"If-Match": '"1"'}
    )
    assert r.status_code == 200 and r.headers["etag"] == '"2"' and r.json()["problems"] == []
    draft = r.json()["draft"]
    # The stored draft shows the defaults it runs with.
    assert draft["nodes"]["menu"]["max_attempts"] == 3
    r = await client.post(f"/v1/flows/{fid}/validate", headers=h)
    assert r.status_code == 200 and r.json() == {"valid": True, "problems": []}
    r = await client.post(f"/v1/flows/{fid}/publish", headers=h | {"If-Match": '"2"'})
    assert r.status_code == 201, r.text
    v1 = r.json()
    assert v1["number"] == 1 and v1["flow_id"] == fid and v1["graph"] == draft
    assert r.headers["location"] == f"/v1/flows/{fid}/versions/1"
    assert v1["published_by"] == t["user"]["id"]  # the owner, through their API key
    r = await client.get(f"/v1/flows/{fid}", headers=h)
    assert r.json()["published_version"] == 1 and r.headers["etag"] == '"3"'

    # Publishing again without changes makes no new version.
    r = await client.post(f"/v1/flows/{fid}/publish", headers=h)
    assert r.status_code == 200 and r.json() == v1
    assert (await client.get(f"/v1/flows/{fid}", headers=h)).headers["etag"] == '"3"'

    # A change publishes as version 2; version 1 stays as it was.
    r = await client.patch(
        f"/v1/flows/{fid}", json={"draft": ivr(ids, greeting="Hello again.")}, headers=h
    )
    r = await client.post(f"/v1/flows/{fid}/publish", headers=h)
    assert r.status_code == 201 and r.json()["number"] == 2
    r = await client.get(f"/v1/flows/{fid}/versions", headers=h)
    assert [v["number"] for v in r.json()["items"]] == [2, 1]
    r = await client.get(f"/v1/flows/{fid}/versions/1", headers=h)
    assert r.json()["graph"]["nodes"]["welcome"]["text"] == "Thanks for calling."
    r = await client.get(f"/v1/flows/{fid}/versions/3", headers=h)
    assert r.status_code == 404 and r.json()["code"] == "flow-version-not-found"

    actions = await admin_conn.fetch(
        "SELECT action, details FROM audit_events WHERE target_id = $1 ORDER BY occurred_at", fid
    )
    # The refused publish changed nothing, so left no trace either.
    assert [a["action"] for a in actions] == [
        "flow.create",
        "flow.update",
        "flow.validate",
        "flow.publish",
        "flow.publish",
        "flow.update",
        "flow.publish",
    ]
    assert json.loads(actions[-1]["details"]) == {"number": 2, "new": True}


async def test_a_user_publishing_is_recorded(
    client: httpx.AsyncClient, app: Any, provision: Provision
) -> None:
    t = await create_tenant(client)
    admin = await create_user(app, t, "admin")
    h = (await login(client, admin["email"]))["headers"]
    ids = await provision(t)
    flow = await create_flow(client, t, draft=ivr(ids))
    r = await client.post(f"/v1/flows/{flow['id']}/publish", headers=h)
    assert r.status_code == 201 and r.json()["published_by"] == admin["id"]


async def test_an_invalid_draft_is_refused_with_every_problem_and_nothing_changes(
    client: httpx.AsyncClient, provision: Provision, admin_conn: asyncpg.Connection
) -> None:
    t = await create_tenant(client)
    ids = await provision(t)
    draft = ivr(ids)
    draft["nodes"]["menu"]["options"]["3"] = "billing"  # no such node
    draft["nodes"]["support"]["queue_id"] = str(uuid.uuid4())  # no such queue
    draft["nodes"]["closed"]["next"] = "welcome"  # welcome -> hours -> closed -> welcome
    draft["nodes"]["bye"] = {"type": "end"}
    flow = await create_flow(client, t, draft=draft)
    expected = [
        ("nodes.menu.options.3", "dangling-transition"),
        ("nodes.support.queue_id", "unknown-queue"),
        ("nodes.bye", "unreachable-node"),
        ("nodes.closed.next", "input-free-loop"),  # welcome -> hours -> closed -> welcome
    ]
    assert [(p["path"], p["code"]) for p in flow["problems"]] == expected
    r = await client.post(f"/v1/flows/{flow['id']}/validate", headers=t["headers"])
    assert r.status_code == 200 and r.json()["valid"] is False
    assert [(p["path"], p["code"]) for p in r.json()["problems"]] == expected
    assert r.json()["problems"][-1]["cycle"] == ["welcome", "hours", "closed", "welcome"]

    r = await client.post(f"/v1/flows/{flow['id']}/publish", headers=t["headers"])
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM_JSON
    body = r.json()
    assert body["code"] == "flow-invalid" and body["field"] == "draft.nodes.menu.options.3"
    assert [(p["path"], p["code"]) for p in body["problems"]] == expected
    again = await client.get(f"/v1/flows/{flow['id']}", headers=t["headers"])
    assert again.json()["published_version"] is None and again.headers["etag"] == '"1"'
    assert await admin_conn.fetchval("SELECT count(*) FROM flow_versions") == 0


async def test_a_second_tenant_never_sees_guesses_or_collides(
    client: httpx.AsyncClient, provision: Provision
) -> None:
    a = await create_tenant(client)
    b = await create_tenant(client)
    a_ids = await provision(a)
    b_ids = await provision(b)
    flow = await create_flow(client, a, draft=ivr(a_ids))
    await client.post(f"/v1/flows/{flow['id']}/publish", headers=a["headers"])
    # The same name is fine in the other tenant, which lists only its own.
    mine = await create_flow(client, b)
    items = (await client.get("/v1/flows", headers=b["headers"])).json()["items"]
    assert [f["id"] for f in items] == [mine["id"]]
    base = f"/v1/flows/{flow['id']}"
    for method, path, body in (
        ("GET", base, None),
        ("PATCH", base, {"name": "Stolen"}),
        ("DELETE", base, None),
        ("POST", f"{base}/validate", None),
        ("POST", f"{base}/publish", None),
        ("GET", f"{base}/versions", None),
        ("GET", f"{base}/versions/1", None),
    ):
        r = await client.request(method, path, json=body, headers=b["headers"])
        assert r.status_code == 404, (method, path, r.text)
        assert r.json()["code"] == "flow-not-found"
    # Ids of the first tenant's queues, hours and skills are unknown to the second.
    r = await client.patch(
        f"/v1/flows/{mine['id']}", json={"draft": ivr(a_ids)}, headers=b["headers"]
    )
    assert [(p["path"], p["code"]) for p in r.json()["problems"]] == [
        ("nodes.hours.business_hours_id", "unknown-business-hours"),
        ("nodes.sales.queue_id", "unknown-queue"),
        ("nodes.sales.extra_skills.0.skill_id", "unknown-skill"),
        ("nodes.support.queue_id", "unknown-queue"),
    ]
    r = await client.patch(
        f"/v1/flows/{mine['id']}", json={"draft": ivr(b_ids)}, headers=b["headers"]
    )
    assert r.json()["problems"] == []
    # Nothing of the first tenant changed.
    r = await client.get(base, headers=a["headers"])
    assert r.json()["name"] == "Main line" and r.json()["published_version"] == 1


async def test_names_are_unique_per_tenant_case_insensitively(client: httpx.AsyncClient) -> None:
    t = await create_tenant(client)
    await create_flow(client, t, name="Main line")
    other = await create_flow(client, t, name="After hours", channel="chat")
    r = await client.post("/v1/flows", json={"name": "  MAIN   line "}, headers=t["headers"])
    assert r.status_code == 409 and r.json()["code"] == "flow-name-taken"
    assert r.json()["field"] == "body.name"
    r = await client.patch(
        f"/v1/flows/{other['id']}", json={"name": "main LINE"}, headers=t["headers"]
    )
    assert r.status_code == 409 and r.json()["code"] == "flow-name-taken"
    # Renaming to a new spelling of its own name is fine.
    r = await client.patch(
        f"/v1/flows/{other['id']}", json={"name": "AFTER HOURS"}, headers=t["headers"]
    )
    assert r.status_code == 200 and r.json()["name"] == "AFTER HOURS"


async def test_concurrent_creates_of_one_name_make_one_flow(client: httpx.AsyncClient) -> None:
    t = await create_tenant(client)
    rs = await asyncio.gather(
        *[client.post("/v1/flows", json={"name": "Race"}, headers=t["headers"]) for _ in range(4)]
    )
    assert sorted(r.status_code for r in rs) == [201, 409, 409, 409]


async def test_stale_etags_answer_412_and_change_nothing(
    client: httpx.AsyncClient, provision: Provision
) -> None:
    t = await create_tenant(client)
    h = t["headers"]
    ids = await provision(t)
    flow = await create_flow(client, t, draft=ivr(ids))
    fid = flow["id"]
    r = await client.patch(
        f"/v1/flows/{fid}", json={"description": "v2"}, headers=h | {"If-Match": '"1"'}
    )
    assert r.status_code == 200 and r.headers["etag"] == '"2"'
    for method, path, body in (
        ("PATCH", f"/v1/flows/{fid}", {"description": "stale"}),
        ("POST", f"/v1/flows/{fid}/publish", None),
        ("DELETE", f"/v1/flows/{fid}", None),
    ):
        r = await client.request(method, path, json=body, headers=h | {"If-Match": '"1"'})
        assert r.status_code == 412, (method, r.text)
        assert r.json()["code"] == "precondition-failed" and r.json()["current_etag"] == '"2"'
    r = await client.get(f"/v1/flows/{fid}", headers=h)
    assert r.json()["description"] == "v2" and r.json()["published_version"] is None
    # A no-op update keeps the version; so does re-sending the same draft.
    r = await client.patch(
        f"/v1/flows/{fid}", json={"description": "v2", "draft": ivr(ids)}, headers=h
    )
    assert r.status_code == 200 and r.headers["etag"] == '"2"'
    # Clearing the description is a change.
    r = await client.patch(f"/v1/flows/{fid}", json={"description": None}, headers=h)
    assert r.json()["description"] is None and r.headers["etag"] == '"3"'


async def test_idempotency_key_replays_create_and_publish(
    client: httpx.AsyncClient, provision: Provision, admin_conn: asyncpg.Connection
) -> None:
    t = await create_tenant(client)
    ids = await provision(t)
    h = t["headers"] | {"Idempotency-Key": "flow-create-1"}
    body = {"name": "Main line", "draft": ivr(ids)}
    first = await client.post("/v1/flows", json=body, headers=h)
    again = await client.post("/v1/flows", json=body, headers=h)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert await admin_conn.fetchval("SELECT count(*) FROM flows") == 1
    r = await client.post("/v1/flows", json={"name": "Other"}, headers=h)
    assert r.status_code == 422 and r.json()["code"] == "idempotency-key-reused"

    fid = first.json()["id"]
    hp = t["headers"] | {"Idempotency-Key": "publish-1"}
    p1 = await client.post(f"/v1/flows/{fid}/publish", headers=hp)
    await client.patch(
        f"/v1/flows/{fid}", json={"draft": ivr(ids, greeting="Hi!")}, headers=t["headers"]
    )
    p2 = await client.post(f"/v1/flows/{fid}/publish", headers=hp)
    # The retry answers the first publish (201, version 1) and publishes nothing new.
    assert p1.status_code == p2.status_code == 201 and p2.json() == p1.json()
    assert await admin_conn.fetchval("SELECT count(*) FROM flow_versions") == 1


BAD_BODIES = [
    ({"name": ""}, "body.name"),
    ({"name": "x" * 101}, "body.name"),
    ({"name": "ok", "channel": "fax"}, "body.channel"),
    ({"name": "ok", "extra": 1}, "body.extra"),
    ({"name": "ok", "description": "a\x00b"}, "body.description"),
    ({"name": "ok", "draft": []}, "body.draft"),
    ({"name": "ok", "draft": {"start": "bad id!"}}, "body.draft.start"),
    ({"name": "ok", "draft": {"nodes": {"m": {"type": "teleport"}}}}, "body.draft.nodes.m.type"),
    ({"name": "ok", "draft": {"nodes": {"m": {"prompt": "p"}}}}, "body.draft.nodes.m.type"),
    (
        {
            "name": "ok",
            "draft": {"nodes": {"m": {"type": "menu", "prompt": "p", "options": {"12": "x"}}}},
        },
        "body.draft.nodes.m.options.12",
    ),
    (
        {
            "name": "ok",
            "draft": {
                "nodes": {
                    "c": {
                        "type": "collect",
                        "prompt": "p",
                        "attribute": "a",
                        "validation": {"kind": "regex", "pattern": "(a|aa)+"},
                    }
                }
            },
        },
        "body.draft.nodes.c.validation.pattern",
    ),
    (
        {"name": "ok", "draft": {"nodes": {"t": {"type": "transfer", "number": "+1415555010"}}}},
        "body.draft.nodes.t.number",
    ),
    (
        {"name": "ok", "draft": {"nodes": {f"n{i}": {"type": "end"} for i in range(501)}}},
        "body.draft.nodes",
    ),
    (
        {"name": "ok", "draft": {"nodes": {"s": {"type": "say", "text": "\ud800"}}}},
        "body.draft.nodes.s.text",
    ),
]


@pytest.mark.parametrize(("body", "field"), BAD_BODIES)
async def test_bad_input_names_the_field_and_creates_nothing(
    client: httpx.AsyncClient, admin_conn: asyncpg.Connection, body: dict[str, Any], field: str
) -> None:
    t = await create_tenant(client)
    raw = json.dumps(body).encode()  # lone surrogates travel escaped, as any client sends them
    r = await client.post(
        "/v1/flows", content=raw, headers=t["headers"] | {"content-type": "application/json"}
    )
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM_JSON and r.json()["field"] == field
    assert await admin_conn.fetchval("SELECT count(*) FROM flows") == 0


async def test_bad_updates_and_paths_change_nothing(client: httpx.AsyncClient) -> None:
    t = await create_tenant(client)
    h = t["headers"]
    flow = await create_flow(client, t)
    fid = flow["id"]
    for body, field in (
        ({"channel": "chat"}, "body.channel"),  # fixed once created
        ({"draft": {"nodes": {"a": {"type": "say"}}}}, "body.draft.nodes.a.text"),
        ({"name": "   "}, "body.name"),
    ):
        r = await client.patch(f"/v1/flows/{fid}", json=body, headers=h)
        assert r.status_code == 422 and r.json()["field"] == field, r.text
    r = await client.get(f"/v1/flows/{fid}", headers=h)
    assert r.headers["etag"] == '"1"' and r.json()["draft"] == flow["draft"]
    for path, field in (
        ("/v1/flows/not-a-uuid", "path.flow_id"),
        (f"/v1/flows/{fid}/versions/0", "path.number"),
        (f"/v1/flows/{fid}/versions/99999999999", "path.number"),
        (f"/v1/flows/{fid}/versions?limit=0", "query.limit"),
    ):
        r = await client.get(path, headers=h)
        assert r.status_code == 422 and r.json()["field"] == field, (path, r.text)
    r = await client.patch(
        f"/v1/flows/{fid}", json={"name": "x"}, headers=h | {"If-Match": "x" * 300}
    )
    assert r.status_code == 422 and r.json()["field"] == "header.If-Match"
    r = await client.get(f"/v1/flows/{uuid.uuid4()}", headers=h)
    assert r.status_code == 404 and r.json()["code"] == "flow-not-found"


async def test_a_flow_a_phone_number_points_at_cannot_be_deleted(
    client: httpx.AsyncClient, provision: Provision, admin_conn: asyncpg.Connection
) -> None:
    t = await create_tenant(client)
    ids = await provision(t)
    flow = await create_flow(client, t, draft=ivr(ids))
    await client.post(f"/v1/flows/{flow['id']}/publish", headers=t["headers"])
    await admin_conn.execute(
        "INSERT INTO phone_numbers (tenant_id, id, version, created_at, updated_at, e164,"
        " country, number_type, carrier, status, claimed_at, flow_id)"
        " VALUES ($1, $2, 1, now(), now(), '+14155550100', 'US', 'local', 'sandbox', 'active',"
        " now(), $3)",
        uuid.UUID(t["tenant"]["id"]),
        uuid.uuid4(),
        uuid.UUID(flow["id"]),
    )
    r = await client.delete(f"/v1/flows/{flow['id']}", headers=t["headers"])
    assert r.status_code == 409 and r.json()["code"] == "flow-in-use"
    assert (await client.get(f"/v1/flows/{flow['id']}", headers=t["headers"])).status_code == 200
    await admin_conn.execute("UPDATE phone_numbers SET flow_id = NULL")
    r = await client.delete(f"/v1/flows/{flow['id']}", headers=t["headers"] | {"If-Match": '"2"'})
    assert r.status_code == 204
    assert (await client.get(f"/v1/flows/{flow['id']}", headers=t["headers"])).status_code == 404
    assert await admin_conn.fetchval("SELECT count(*) FROM flow_versions") == 0


async def test_lists_are_cursor_paginated(client: httpx.AsyncClient, provision: Provision) -> None:
    t = await create_tenant(client)
    h = t["headers"]
    ids = await provision(t)
    names = [f"Flow {i}" for i in range(3)]
    for name in names:
        await create_flow(client, t, name=name)
    r = await client.get("/v1/flows", params={"limit": 2}, headers=h)
    page1 = r.json()
    assert [f["name"] for f in page1["items"]] == ["Flow 2", "Flow 1"]
    assert "draft" not in page1["items"][0]
    r = await client.get(
        "/v1/flows", params={"limit": 2, "cursor": page1["next_cursor"]}, headers=h
    )
    assert [f["name"] for f in r.json()["items"]] == ["Flow 0"] and r.json()["next_cursor"] is None

    fid = page1["items"][0]["id"]
    for greeting in ("One.", "Two.", "Three."):
        await client.patch(
            f"/v1/flows/{fid}", json={"draft": ivr(ids, greeting=greeting)}, headers=h
        )
        assert (await client.post(f"/v1/flows/{fid}/publish", headers=h)).status_code == 201
    r = await client.get(f"/v1/flows/{fid}/versions", params={"limit": 2}, headers=h)
    assert [v["number"] for v in r.json()["items"]] == [3, 2]
    cursor = r.json()["next_cursor"]
    r = await client.get(
        f"/v1/flows/{fid}/versions", params={"limit": 2, "cursor": cursor}, headers=h
    )
    assert [v["number"] for v in r.json()["items"]] == [1] and r.json()["next_cursor"] is None
    # A flows cursor is not a versions cursor.
    r = await client.get(
        f"/v1/flows/{fid}/versions", params={"cursor": page1["next_cursor"]}, headers=h
    )
    assert r.status_code == 422 and r.json()["field"] == "query.cursor"


async def test_supervisors_read_and_validate_agents_see_nothing(
    client: httpx.AsyncClient, app: Any
) -> None:
    t = await create_tenant(client)
    flow = await create_flow(client, t)
    sup = (await login(client, (await create_user(app, t, "supervisor"))["email"]))["headers"]
    agent = (await login(client, (await create_user(app, t, "agent"))["email"]))["headers"]
    assert (await client.get(f"/v1/flows/{flow['id']}", headers=sup)).status_code == 200
    assert (await client.post(f"/v1/flows/{flow['id']}/validate", headers=sup)).status_code == 200
    r = await client.post(f"/v1/flows/{flow['id']}/publish", headers=sup)
    assert r.status_code == 403 and r.json()["required_scope"] == "flows:write"
    assert (await client.get("/v1/flows", headers=agent)).status_code == 403


async def test_a_contact_keeps_the_version_it_started_on(
    client: httpx.AsyncClient, app: Any, provision: Provision
) -> None:
    t = await create_tenant(client)
    h = t["headers"]
    ids = await provision(t)
    flow = await create_flow(client, t, draft=ivr(ids))
    await client.post(f"/v1/flows/{flow['id']}/publish", headers=h)
    scope = mint_scope(uuid.UUID(t["tenant"]["id"]))

    async def published() -> tuple[int, Any]:
        async with app.state.session_factory() as session, session.begin():
            await bind_tenant(session, scope)
            return await service.published_graph(session, scope, uuid.UUID(flow["id"]))

    number, graph = await published()
    contact = start(graph, flow_id=flow["id"], version=number)
    contact.feed(hours(open=True))
    saved = json.dumps(contact.to_json())  # the contact waits at the menu

    # Version 2 swaps the keys: "1" now means support.
    v2 = ivr(ids)
    v2["nodes"]["menu"]["options"] = {"1": "support", "2": "sales"}
    await client.patch(f"/v1/flows/{flow['id']}", json={"draft": v2}, headers=h)
    assert (await client.post(f"/v1/flows/{flow['id']}/publish", headers=h)).status_code == 201

    resumed = FlowSession.from_json(json.loads(saved))
    assert resumed.version == 1
    queued = resumed.feed(dtmf("1"))[-1]
    assert isinstance(queued, Queue) and str(queued.queue_id) == ids["sales"]
    number, graph = await published()
    newcomer = start(graph, version=number)
    newcomer.feed(hours(open=True))
    queued = newcomer.feed(dtmf("1"))[-1]
    assert number == 2 and isinstance(queued, Queue) and str(queued.queue_id) == ids["support"]


async def test_the_openapi_schema_documents_every_answer(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    paths = {p: ops for p, ops in schema["paths"].items() if p.startswith("/v1/flows")}
    expected = {
        ("/v1/flows", "post"): {"201", "409", "422"},
        ("/v1/flows", "get"): {"200", "422"},
        ("/v1/flows/{flow_id}", "get"): {"200", "404"},
        ("/v1/flows/{flow_id}", "patch"): {"200", "404", "409", "412", "422"},
        ("/v1/flows/{flow_id}", "delete"): {"204", "404", "409", "412"},
        ("/v1/flows/{flow_id}/validate", "post"): {"200", "404"},
        ("/v1/flows/{flow_id}/publish", "post"): {"200", "201", "404", "412", "422"},
        ("/v1/flows/{flow_id}/versions", "get"): {"200", "404"},
        ("/v1/flows/{flow_id}/versions/{number}", "get"): {"200", "404", "422"},
    }
    for (path, method), statuses in expected.items():
        responses = paths[path][method]["responses"]
        assert statuses <= set(responses), (path, method, set(responses))
        assert {"401", "403"} <= set(responses)
    publish_422 = paths["/v1/flows/{flow_id}/publish"]["post"]["responses"]["422"]
    example = publish_422["content"][PROBLEM_JSON]["examples"]["flow-invalid"]["value"]
    assert example["code"] == "flow-invalid" and example["problems"][0]["path"]
    stale = paths["/v1/flows/{flow_id}"]["patch"]["responses"]["412"]["content"][PROBLEM_JSON]
    assert stale["examples"]["precondition-failed"]["value"]["code"] == "precondition-failed"
    create = schema["components"]["schemas"]["FlowCreate"]
    assert create["examples"][0]["draft"]["nodes"]["menu"]["type"] == "menu"
