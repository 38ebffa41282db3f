"""Where a channel's inbound conversations go: a queue that takes the channel's routing
channel, or a published contact flow, at most one. Bad targets answer 422 naming the
field with nothing written; a queue a channel routes to cannot be deleted (or stop
taking the channel) while it does."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from app.channels import service
from app.channels.schemas import WebchatChannelCreate
from app.channels.validation import ROUTING_CHANNEL
from app.core.crypto import load_cipher
from app.db.tenant import bind_tenant, mint_scope
from tests.channels.conftest import WEBCHAT, create_channel, sms
from tests.conftest import create_tenant
from tests.queues.test_queues import make_queue
from tests.queues.test_queues_used_by_flows import GOODBYE, make_flow, publish

Tenant = dict[str, Any]


def body_of(channel_type: str, **config: Any) -> dict[str, Any]:
    """A valid create body of ``channel_type`` with ``config`` added to its settings."""
    account = str(uuid.uuid4().int)[:15]
    bodies: dict[str, dict[str, Any]] = {
        "webchat": WEBCHAT,
        "email": {
            "type": "email",
            "name": "Mail",
            "config": {"local_part": "help-" + uuid.uuid4().hex[:8]},
        },
        "sms": sms(),
        "whatsapp": {
            "type": "whatsapp",
            "name": "WhatsApp",
            "config": {"provider": "meta", "provider_account_id": account},
            "credentials": {"access_token": "EAAG-test", "app_secret": "s3cret-wa"},
        },
        "wechat": {
            "type": "wechat",
            "name": "WeChat",
            "config": {"provider_account_id": "wx" + uuid.uuid4().hex[:16]},
            "credentials": {"app_secret": "s3cret-wc", "token": "tok"},
        },
        "messenger": {
            "type": "messenger",
            "name": "Messenger",
            "config": {"provider": "meta", "provider_account_id": account},
            "credentials": {"page_access_token": "EAAG-page", "app_secret": "s3cret-fb"},
        },
    }
    body = dict(bodies[channel_type])
    body["config"] = dict(body["config"]) | config
    return body


async def count_channels(admin_conn: asyncpg.Connection) -> int:
    return int(await admin_conn.fetchval("SELECT count(*) FROM channels"))


async def refused(
    client: httpx.AsyncClient, t: Tenant, body: dict[str, Any], code: str, field: str
) -> dict[str, Any]:
    r = await client.post("/v1/channels", json=body, headers=t["headers"])
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem: dict[str, Any] = r.json()
    assert (problem["code"], problem["field"]) == (code, field), problem
    return problem


async def patch(
    client: httpx.AsyncClient, t: Tenant, channel_id: str, config: dict[str, Any]
) -> httpx.Response:
    return await client.patch(
        f"/v1/channels/{channel_id}", json={"config": config}, headers=t["headers"]
    )


def test_each_conversational_type_feeds_its_routing_channel():
    assert ROUTING_CHANNEL == {
        "webchat": "chat",
        "email": "email",
        "sms": "sms",
        "whatsapp": "messaging",
        "wechat": "messaging",
        "messenger": "messaging",
    }
    assert "voice" not in ROUTING_CHANNEL  # calls reach queues through numbers and flows


@pytest.mark.parametrize(
    ("types", "queue_channels"),
    [
        (("webchat", "email", "sms"), ["chat", "email", "sms"]),
        (("whatsapp", "wechat", "messenger"), ["messaging"]),
    ],
)
async def test_a_channel_routes_to_a_queue_that_takes_it(client, types, queue_channels):
    t = await create_tenant(client)
    queue = await make_queue(client, t, "Front desk", channels=queue_channels)
    for channel_type in types:
        ch = await create_channel(client, t, body_of(channel_type, queue_id=queue["id"]))
        assert ch["config"]["queue_id"] == queue["id"]
        assert ch["config"]["flow_id"] is None
        got = await client.get(f"/v1/channels/{ch['id']}", headers=t["headers"])
        assert got.status_code == 200
        assert got.json()["config"]["queue_id"] == queue["id"], channel_type
    # Without a target the channel is made all the same, taking no conversations yet.
    bare = await create_channel(client, t, body_of(types[0]) | {"name": "Not routed"})
    assert (bare["config"]["queue_id"], bare["config"]["flow_id"]) == (None, None)


@pytest.mark.parametrize(
    ("channel_type", "queue_channels", "needs"),
    [
        ("webchat", ["voice", "email"], "chat"),
        ("email", ["chat"], "email"),
        ("sms", ["messaging"], "sms"),
        ("whatsapp", ["sms", "chat"], "messaging"),
        ("messenger", ["chat"], "messaging"),
    ],
)
async def test_a_queue_that_does_not_take_the_channel_is_refused(
    client, admin_conn, channel_type, queue_channels, needs
):
    t = await create_tenant(client)
    queue = await make_queue(client, t, "Phones", channels=queue_channels)
    problem = await refused(
        client,
        t,
        body_of(channel_type, queue_id=queue["id"]),
        "channel-not-taken",
        "body.config.queue_id",
    )
    assert f"not {needs}" in problem["detail"]
    assert await count_channels(admin_conn) == 0
    assert await admin_conn.fetchval("SELECT count(*) FROM channel_addresses") == 0


async def test_an_unknown_queue_and_another_tenants_queue_read_alike(client, admin_conn):
    a = await create_tenant(client, company_name="Alpha")
    b = await create_tenant(client, company_name="Beta")
    theirs = await make_queue(client, b, "Chat", channels=["chat"])
    missing = await refused(
        client,
        a,
        body_of("webchat", queue_id=str(uuid.uuid4())),
        "unknown-reference",
        "body.config.queue_id",
    )
    stolen = await refused(
        client,
        a,
        body_of("webchat", queue_id=theirs["id"]),
        "unknown-reference",
        "body.config.queue_id",
    )
    assert stolen["detail"] == missing["detail"]
    assert await count_channels(admin_conn) == 0
    # The same through PATCH, and the channel is left as it was.
    ch = await create_channel(client, a, body_of("webchat"))
    r = await patch(client, a, ch["id"], {"queue_id": theirs["id"]})
    assert r.status_code == 422 and r.json()["code"] == "unknown-reference"
    assert r.json()["field"] == "body.config.queue_id"
    got = await client.get(f"/v1/channels/{ch['id']}", headers=a["headers"])
    assert got.json() == ch


async def test_a_channel_runs_a_published_flow(client, admin_conn):
    a = await create_tenant(client, company_name="Alpha")
    b = await create_tenant(client, company_name="Beta")
    flow = await make_flow(client, a, "Greeter", GOODBYE)
    # A draft is not something conversations can run.
    problem = await refused(
        client,
        a,
        body_of("webchat", flow_id=flow),
        "flow-not-published",
        "body.config.flow_id",
    )
    assert "publish" in problem["detail"]
    await publish(client, a, flow)
    ch = await create_channel(client, a, body_of("sms", flow_id=flow))
    assert (ch["config"]["flow_id"], ch["config"]["queue_id"]) == (flow, None)
    got = await client.get(f"/v1/channels/{ch['id']}", headers=a["headers"])
    assert got.json()["config"]["flow_id"] == flow

    # Another tenant's published flow reads like a missing one.
    await refused(
        client, b, body_of("webchat", flow_id=flow), "unknown-reference", "body.config.flow_id"
    )
    await refused(
        client,
        b,
        body_of("webchat", flow_id=str(uuid.uuid4())),
        "unknown-reference",
        "body.config.flow_id",
    )
    # A voice flow cannot take chat conversations (as contacts check it).
    r = await client.post(
        "/v1/flows",
        json={"name": "IVR", "channel": "voice", "draft": GOODBYE},
        headers=a["headers"],
    )
    assert r.status_code == 201, r.text
    await publish(client, a, r.json()["id"])
    await refused(
        client,
        a,
        body_of("webchat", flow_id=r.json()["id"]),
        "channel-not-taken",
        "body.config.flow_id",
    )
    assert await count_channels(admin_conn) == 1


async def test_queue_and_flow_together_are_refused(client, admin_conn):
    t = await create_tenant(client)
    queue = await make_queue(client, t, "Chat", channels=["chat"])
    flow = await make_flow(client, t, "Greeter", GOODBYE)
    await publish(client, t, flow)
    problem = await refused(
        client,
        t,
        body_of("webchat", queue_id=queue["id"], flow_id=flow),
        "validation-failed",
        "body.config.flow_id",
    )
    assert "give queue_id or flow_id, not both" in problem["detail"]
    assert await count_channels(admin_conn) == 0


async def test_patch_sets_switches_and_clears_the_target(client):
    t = await create_tenant(client)
    chat = await make_queue(client, t, "Chat", channels=["chat"])
    voice = await make_queue(client, t, "Calls", channels=["voice"])
    flow = await make_flow(client, t, "Greeter", GOODBYE)
    await publish(client, t, flow)
    ch = await create_channel(client, t, body_of("webchat"))
    url = f"/v1/channels/{ch['id']}"

    r = await patch(client, t, ch["id"], {"queue_id": chat["id"]})
    assert r.status_code == 200, r.text
    assert r.json()["config"]["queue_id"] == chat["id"]
    assert r.json()["version"] == ch["version"] + 1
    # The same value again changes nothing: same version.
    r = await patch(client, t, ch["id"], {"queue_id": chat["id"]})
    assert r.status_code == 200 and r.json()["version"] == ch["version"] + 1
    routed = r.json()

    # A queue that does not take chat, both at once, or a flow on top of the queue: 422.
    for config, code, field in (
        ({"queue_id": voice["id"]}, "channel-not-taken", "body.config.queue_id"),
        ({"queue_id": chat["id"], "flow_id": flow}, "validation-failed", "body.config.flow_id"),
        ({"flow_id": flow}, "validation-failed", "body.config.flow_id"),
    ):
        r = await patch(client, t, ch["id"], config)
        assert r.status_code == 422, (config, r.text)
        assert (r.json()["code"], r.json()["field"]) == (code, field), config
    assert "queue_id null" in r.json()["detail"]  # says how to switch
    assert (await client.get(url, headers=t["headers"])).json() == routed

    # Switching sends the new target and null for the old one.
    r = await patch(client, t, ch["id"], {"flow_id": flow, "queue_id": None})
    assert r.status_code == 200, r.text
    assert (r.json()["config"]["queue_id"], r.json()["config"]["flow_id"]) == (None, flow)
    # Explicit null clears: the channel takes no conversations.
    r = await patch(client, t, ch["id"], {"flow_id": None})
    assert r.status_code == 200, r.text
    assert (r.json()["config"]["queue_id"], r.json()["config"]["flow_id"]) == (None, None)
    # The audit log records each change of target.
    r = await client.get(
        "/v1/audit-events", headers=t["headers"], params={"action": "channel.update"}
    )
    assert r.status_code == 200, r.text
    changes = sorted(sorted(e["details"]["changed"]) for e in r.json()["items"])
    assert [c for c in changes if c] == [  # the no-op PATCH changed nothing
        ["config.flow_id"],
        ["config.flow_id", "config.queue_id"],
        ["config.queue_id"],
    ]


async def test_voice_channels_take_no_routing_target(client, admin_conn):
    t = await create_tenant(client)
    queue = await make_queue(client, t, "Calls", channels=["voice"])
    await refused(
        client,
        t,
        {"type": "voice", "name": "Line", "config": {"queue_id": queue["id"]}},
        "validation-failed",
        "body.config.queue_id",
    )
    voice = await create_channel(client, t, {"type": "voice", "name": "Line"})
    for name in ("queue_id", "flow_id"):
        r = await patch(client, t, voice["id"], {name: str(uuid.uuid4())})
        assert r.status_code == 422, r.text
        assert r.json()["field"] == f"body.config.{name}"
        assert "does not apply to voice channels" in r.json()["detail"]
    assert await count_channels(admin_conn) == 1


async def test_a_queue_a_channel_routes_to_cannot_be_deleted(client):
    t = await create_tenant(client)
    h = t["headers"]
    queue = await make_queue(client, t, "Support", channels=["chat", "sms"])
    chat = await create_channel(client, t, body_of("webchat", queue_id=queue["id"]))
    text = await create_channel(client, t, body_of("sms", queue_id=queue["id"]))
    url = f"/v1/queues/{queue['id']}"

    r = await client.delete(url, headers=h)
    assert r.status_code == 409, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "queue-in-use"
    assert r.json()["used_by"] == [
        {"type": "channel", "id": text["id"], "name": "Text us", "as": "routing target"},
        {"type": "channel", "id": chat["id"], "name": "Website chat", "as": "routing target"},
    ]
    assert "channel" in r.json()["detail"]

    # Nor may the queue stop taking what a channel sends it.
    r = await client.patch(url, json={"channels": ["chat", "email"]}, headers=h)
    assert r.status_code == 409, r.text
    assert (r.json()["code"], r.json()["field"]) == ("queue-in-use", "body.channels")
    assert [u["id"] for u in r.json()["used_by"]] == [text["id"]]
    assert "sms" in r.json()["detail"]
    r = await client.patch(url, json={"channels": ["chat", "sms", "email"]}, headers=h)
    assert r.status_code == 200, r.text

    # Point both channels elsewhere (or nowhere): the queue can go.
    assert (await patch(client, t, chat["id"], {"queue_id": None})).status_code == 200
    r = await client.delete(url, headers=h)
    assert r.status_code == 409 and [u["id"] for u in r.json()["used_by"]] == [text["id"]]
    assert (await patch(client, t, text["id"], {"queue_id": None})).status_code == 200
    assert (await client.delete(url, headers=h)).status_code == 204


async def test_another_tenants_channel_does_not_block_a_queue_delete(client, admin_conn):
    a, b = await create_tenant(client), await create_tenant(client)
    queue = await make_queue(client, a, "Support")
    ch = await create_channel(client, b, body_of("webchat"))
    # Even a row naming A's queue (written past the API) is B's, not A's, concern.
    await admin_conn.execute(
        "UPDATE channels SET config = config || jsonb_build_object('queue_id', $1::text)"
        " WHERE id = $2",
        queue["id"],
        uuid.UUID(ch["id"]),
    )
    r = await client.delete(f"/v1/queues/{queue['id']}", headers=a["headers"])
    assert r.status_code == 204, r.text


async def test_a_delete_waits_for_a_channel_that_routes_to_the_queue(client, app):
    """Pointing a channel at a queue share-locks the queue until it commits: a delete
    running at the same moment waits, then refuses, instead of leaving it dangling."""
    t = await create_tenant(client)
    queue = await make_queue(client, t, "Support")
    scope = mint_scope(uuid.UUID(t["tenant"]["id"]))
    data = WebchatChannelCreate.model_validate(
        body_of("webchat", queue_id=queue["id"]) | {"name": "Late chat"}
    )

    async with app.state.session_factory() as session:
        async with session.begin():
            await bind_tenant(session, scope)
            created = await service.create(
                session,
                scope,
                data,
                plan="trial",
                cipher=load_cipher(app.state.settings),
                inbound_email_domain="inbound.test",
            )
            delete = asyncio.create_task(
                client.delete(f"/v1/queues/{queue['id']}", headers=t["headers"])
            )
            await asyncio.sleep(0.3)
            assert not delete.done()  # waiting for the channel to commit
        r = await delete
    assert r.status_code == 409, r.text
    assert r.json()["used_by"] == [
        {
            "type": "channel",
            "id": str(created.channel.id),
            "name": "Late chat",
            "as": "routing target",
        }
    ]


async def test_load_for_ingress_returns_the_row_enabled_or_not(client, app):
    a, b = await create_tenant(client), await create_tenant(client)
    queue = await make_queue(client, a, "Support")
    ch = await create_channel(
        client, a, body_of("webchat", queue_id=queue["id"]) | {"enabled": False}
    )
    channel_id = uuid.UUID(ch["id"])
    async with app.state.session_factory() as session, session.begin():
        scope = mint_scope(uuid.UUID(a["tenant"]["id"]))
        await bind_tenant(session, scope)
        row = await service.load_for_ingress(session, scope, channel_id)
        assert row is not None and row.enabled is False
        assert row.config["queue_id"] == queue["id"] and row.config["flow_id"] is None
        assert await service.load_for_ingress(session, scope, uuid.uuid4()) is None
    async with app.state.session_factory() as session, session.begin():
        other = mint_scope(uuid.UUID(b["tenant"]["id"]))
        await bind_tenant(session, other)
        assert await service.load_for_ingress(session, other, channel_id) is None


async def test_a_flow_a_channel_routes_to_cannot_be_deleted(client):
    a = await create_tenant(client, company_name="Alpha")
    flow = await make_flow(client, a, "Greeter", GOODBYE)
    await publish(client, a, flow)
    ch = await create_channel(client, a, body_of("sms", flow_id=flow))
    r = await client.delete(f"/v1/flows/{flow}", headers=a["headers"])
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "flow-in-use" and ch["name"] in r.json()["detail"]
    r = await client.patch(
        f"/v1/channels/{ch['id']}", json={"config": {"flow_id": None}}, headers=a["headers"]
    )
    assert r.status_code == 200, r.text
    r = await client.delete(f"/v1/flows/{flow}", headers=a["headers"])
    assert r.status_code == 204, r.text
