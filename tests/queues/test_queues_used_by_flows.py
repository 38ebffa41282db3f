"""A queue that a contact flow routes to cannot be deleted: flows name queues inside
their graphs (no foreign key), so the queues service asks the flows which use it."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from app.core.concurrency import IfMatch
from app.db.tenant import bind_tenant, mint_scope
from app.flows import service as flows_service
from tests.conftest import create_tenant
from tests.queues.test_queues import make_queue

Tenant = dict[str, Any]


def routes_to(queue_id: str) -> dict[str, Any]:
    return {"start": "q", "nodes": {"q": {"type": "route_to_queue", "queue_id": queue_id}}}


def offers_callback(queue_id: str) -> dict[str, Any]:
    return {
        "start": "cb",
        "nodes": {
            "cb": {
                "type": "offer_callback",
                "queue_id": queue_id,
                "prompt": "Press 1 for a call back.",
                "declined": "bye",
            },
            "bye": {"type": "end"},
        },
    }


GOODBYE: dict[str, Any] = {"start": "bye", "nodes": {"bye": {"type": "end"}}}


async def make_flow(client: httpx.AsyncClient, t: Tenant, name: str, draft: Any) -> str:
    r = await client.post(
        "/v1/flows", json={"name": name, "channel": "any", "draft": draft}, headers=t["headers"]
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def set_draft(client: httpx.AsyncClient, t: Tenant, flow_id: str, draft: Any) -> None:
    r = await client.patch(f"/v1/flows/{flow_id}", json={"draft": draft}, headers=t["headers"])
    assert r.status_code == 200, r.text


async def publish(client: httpx.AsyncClient, t: Tenant, flow_id: str) -> int:
    r = await client.post(f"/v1/flows/{flow_id}/publish", headers=t["headers"])
    assert r.status_code == 201, r.text
    return int(r.json()["number"])


async def test_a_queue_a_flow_routes_to_cannot_be_deleted(client):
    t = await create_tenant(client)
    h = t["headers"]
    queue = await make_queue(client, t, "Support", channels=["voice", "chat"])
    url = f"/v1/queues/{queue['id']}"
    main = await make_flow(client, t, "Main line", routes_to(queue["id"]))
    callback = await make_flow(client, t, "Callbacks", offers_callback(queue["id"]))

    # Drafts count: the flow would route there once published.
    r = await client.delete(url, headers=h)
    assert r.status_code == 409, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "queue-in-use"
    assert r.json()["used_by"] == [
        {"type": "flow", "id": callback, "name": "Callbacks", "as": "draft"},
        {"type": "flow", "id": main, "name": "Main line", "as": "draft"},
    ]
    assert "contact flows" in r.json()["detail"]

    # Published, then the draft moves on: the published version still routes there.
    assert await publish(client, t, main) == 1
    await set_draft(client, t, main, GOODBYE)
    await set_draft(client, t, callback, GOODBYE)
    r = await client.delete(url, headers=h)
    assert r.status_code == 409
    assert r.json()["used_by"] == [
        {"type": "flow", "id": main, "name": "Main line", "as": "published version 1"}
    ]
    await set_draft(client, t, main, routes_to(queue["id"]))
    r = await client.delete(url, headers=h)
    assert r.json()["used_by"][0]["as"] == "draft and published version 1"

    # Version 2 no longer uses it; version 1 stays in history but is not what runs.
    await set_draft(client, t, main, GOODBYE)
    assert await publish(client, t, main) == 2
    assert (await client.delete(url, headers=h)).status_code == 204
    assert (await client.get(url, headers=h)).status_code == 404
    r = await client.get(f"/v1/flows/{main}/versions/1", headers=h)
    assert r.json()["graph"]["nodes"]["q"]["queue_id"] == queue["id"]


async def test_another_tenants_draft_naming_the_id_does_not_block_the_delete(client):
    a, b = await create_tenant(client), await create_tenant(client)
    queue = await make_queue(client, a, "Support")
    # B's draft names A's queue id (a draft is checked only for shape).
    await make_flow(client, b, "Copied", routes_to(queue["id"]))
    r = await client.delete(f"/v1/queues/{queue['id']}", headers=a["headers"])
    assert r.status_code == 204, r.text


async def test_a_delete_waits_for_a_publish_that_uses_the_queue(client, app):
    """Publishing holds the queues it names until it commits: a delete running at the
    same moment sees the new version and refuses, instead of leaving it dangling."""
    t = await create_tenant(client)
    queue = await make_queue(client, t, "Support")
    flow = await make_flow(client, t, "Main line", routes_to(queue["id"]))
    scope = mint_scope(uuid.UUID(t["tenant"]["id"]))

    async with app.state.session_factory() as session:
        async with session.begin():
            await bind_tenant(session, scope)
            version, created = await flows_service.publish(
                session, scope, uuid.UUID(flow), IfMatch(None), published_by=None
            )
            assert created and version.number == 1
            delete = asyncio.create_task(
                client.delete(f"/v1/queues/{queue['id']}", headers=t["headers"])
            )
            await asyncio.sleep(0.3)
            assert not delete.done()  # waiting for the publish to commit
        r = await delete
    assert r.status_code == 409, r.text
    assert r.json()["used_by"] == [
        {"type": "flow", "id": flow, "name": "Main line", "as": "draft and published version 1"}
    ]


async def test_a_publish_after_a_concurrent_delete_names_the_missing_queue(client, app):
    t = await create_tenant(client)
    queue = await make_queue(client, t, "Support")
    flow = await make_flow(client, t, "Main line", GOODBYE)
    scope = mint_scope(uuid.UUID(t["tenant"]["id"]))
    from app.queues import service as queues_service

    async with app.state.session_factory() as session:
        async with session.begin():
            await bind_tenant(session, scope)
            await queues_service.delete(session, scope, uuid.UUID(queue["id"]), IfMatch(None))
            # Saved while the delete is still open: a draft is checked only for shape.
            await set_draft(client, t, flow, routes_to(queue["id"]))
            publish = asyncio.create_task(
                client.post(f"/v1/flows/{flow}/publish", headers=t["headers"])
            )
            await asyncio.sleep(0.3)
            assert not publish.done()  # waiting for the delete to commit
        r = await publish
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "flow-invalid"
    assert [(p["path"], p["code"]) for p in r.json()["problems"]] == [
        ("nodes.q.queue_id", "unknown-queue")
    ]
    assert (await client.get(f"/v1/flows/{flow}", headers=t["headers"])).json()[
        "published_version"
    ] is None
