"""The visitor's WebSocket, GET /v1/widget/stream, against a real server (uvicorn in a
thread) with a routing worker in the test's loop: what the chat widget sees."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from app.conversations.outbound import send_message
from app.db.tenant import bind_tenant, mint_scope
from tests.live_server import serve
from tests.routing.conftest import go_available, running_router, wait_offer
from tests.stream_client import StreamClient, close_all, closed_with
from tests.webchat.conftest import ORIGIN, open_session, start_chat, widget_tenant

SMALL_POOL = {"db_pool_size": 2, "db_max_overflow": 8}


@pytest.fixture(scope="module")
def live(settings: Any, db_urls: Any) -> Iterator[str]:
    quick = settings.model_copy(update={"widget_position_seconds": 0.2} | SMALL_POOL)
    with serve(quick, db_urls.app) as url:
        yield url.replace("http://", "ws://")


class Widget(StreamClient):
    """The chat widget on the socket."""


async def open_widget(
    base: str,
    visitor: dict[str, Any],
    conversation_id: str,
    *,
    since: int | None = None,
    origin: str = ORIGIN,
) -> Widget:
    ws = await connect(f"{base}/v1/widget/stream", additional_headers={"Origin": origin})
    first: dict[str, Any] = {
        "type": "auth",
        "token": visitor["visitor_token"],
        "conversation_id": conversation_id,
    }
    if since is not None:
        first["since"] = since
    await ws.send(json.dumps(first))
    return Widget(ws)


@pytest.fixture
async def widgets() -> AsyncIterator[list[Widget]]:
    opened: list[Widget] = []
    yield opened
    await close_all(opened)


async def agent_reply(app: Any, tenant: dict[str, Any], conversation_id: str, text: str) -> str:
    """The agent's reply, written by the conversations core as the agent's REST call does."""
    scope = mint_scope(uuid.UUID(tenant["tenant"]["id"]))
    agent = tenant["agents"][0]
    async with app.state.session_factory() as session, session.begin():
        await bind_tenant(session, scope)
        read = await send_message(
            session,
            scope,
            conversation_id=uuid.UUID(conversation_id),
            text=text,
            sender_kind="agent",
            agent_id=uuid.UUID(agent["id"]),
            store=app.state.object_store,
            settings=app.state.settings,
            factory=None,
        )
    return str(read.id)


async def assign(
    client: httpx.AsyncClient, tenant: dict[str, Any], contact_id: str, db_urls: Any
) -> None:
    agent = tenant["agents"][0]
    async with running_router(db_urls):
        offer = await wait_offer(client, agent, contact_id)
        r = await client.post(f"/v1/reservations/{offer['id']}/accept", headers=agent["headers"])
        assert r.status_code == 200, r.text


async def contact_of(clean_db: Any, conversation_id: str) -> str:
    found = await clean_db.fetchval(
        "SELECT contact_id FROM conversations WHERE id = $1", uuid.UUID(conversation_id)
    )
    return str(found)


async def test_a_chat_from_the_line_to_the_agent_and_back(
    app, client, clean_db, db_urls, live, widgets
):
    t = await widget_tenant(client)
    visitor = await open_session(client, t)
    started = await start_chat(client, visitor)
    cid = started["conversation"]["id"]
    w = await open_widget(live, visitor, cid)
    widgets.append(w)
    hello = await w.expect(type="hello")
    assert hello["conversation"]["state"] == "queued"
    assert hello["conversation"]["position"] == 1
    assert hello["conversation"]["estimated_wait_seconds"] is None  # nobody serves it yet

    # An agent logs in: the wait can be estimated now, and the widget is told.
    await go_available(client, t["agents"][0])
    place = await w.expect(type="queue.position")
    assert place["position"] == 1 and place["estimated_wait_seconds"] == pytest.approx(180.0)

    await assign(client, t, await contact_of(clean_db, cid), db_urls)
    joined = await w.expect(type="event", topic="agent.joined")
    assert joined["payload"] == {"name": "Agent 0", "role": "owner"}

    reply_id = await agent_reply(app, t, cid, "Hi, I am Agent 0. How can I help?")
    got = await w.expect(type="event", topic="message.created")
    message = got["payload"]["message"]
    assert message["id"] == reply_id and message["direction"] == "outbound"
    assert message["agent_name"] == "Agent 0" and "agent_id" not in message

    # The visitor answers over the socket, and reads the agent's message.
    sent = await w.call("message", text="My order is late", client_message_id="c-1")
    assert sent["ok"] is True and sent["duplicate"] is False
    mine = await w.expect(type="event", topic="message.created", payload={})
    assert mine["payload"]["message"]["id"] == sent["message"]["id"]
    again = await w.call("message", text="My order is late", client_message_id="c-1")
    assert again["duplicate"] is True and again["message"]["id"] == sent["message"]["id"]
    read = await w.call("read", message_id=reply_id)
    assert read["marked_read"] == 1
    status = await w.expect(type="event", topic="message.status")
    assert status["payload"]["message_id"] == reply_id and status["payload"]["status"] == "read"

    typing = await w.call("typing", state="typing")
    assert typing["passed_on"] is True
    assert (await w.call("typing", state="typing"))["passed_on"] is False  # within a second
    shown = await w.expect(type="event", topic="typing")
    assert shown["payload"] == {"from": "customer", "typing": True}

    bad = await w.call("message", text="x" * 5001, client_message_id="c-2")
    assert bad["type"] == "error" and bad["status"] == 422 and bad["field"] == "text"
    unknown = await w.call("dance")
    assert unknown["code"] == "unknown-command"

    # Everything the customer stream got, in order of id, and nothing agents-only.
    ids = [e["id"] for e in w.events()]
    assert ids == sorted(ids) and len(ids) == len(set(ids))
    topics = {e["topic"] for e in w.events()}
    assert not topics & {"conversation.assigned", "conversation.unrouted"}
    for event in w.events():
        assert "agent_id" not in json.dumps(event["payload"])


async def test_a_dropped_widget_resumes_without_loss_or_repeats(
    app, client, clean_db, db_urls, live, widgets
):
    t = await widget_tenant(client)
    visitor = await open_session(client, t)
    cid = (await start_chat(client, visitor))["conversation"]["id"]
    await go_available(client, t["agents"][0])
    await assign(client, t, await contact_of(clean_db, cid), db_urls)
    w = await open_widget(live, visitor, cid)
    hello = await w.expect(type="hello")
    first = await agent_reply(app, t, cid, "one")
    got = await w.expect(type="event", topic="message.created")
    assert got["payload"]["message"]["id"] == first
    last_seen = got["id"]
    await w.ws.close()

    # Meanwhile: two more replies and a read receipt the widget did not see.
    missed = [await agent_reply(app, t, cid, "two"), await agent_reply(app, t, cid, "three")]
    r = await client.post(
        f"/v1/widget/conversations/{cid}/read",
        json={"message_id": missed[0]},
        headers=visitor["headers"],
    )
    assert r.status_code == 200 and r.json()["marked_read"] == 2

    back = await open_widget(live, visitor, cid, since=last_seen)
    widgets.append(back)
    again = await back.expect(type="hello")
    assert again["latest_event_id"] > hello["latest_event_id"]
    replayed = [await back.expect(type="event") for _ in range(4)]
    assert [e["topic"] for e in replayed] == [
        "message.created",
        "message.created",
        "message.status",
        "message.status",
    ]
    assert [e["payload"]["message"]["id"] for e in replayed[:2]] == missed
    assert {e["payload"]["message_id"] for e in replayed[2:]} == {first, missed[0]}
    assert all(e["id"] > last_seen for e in replayed)
    assert [e["id"] for e in replayed] == sorted(e["id"] for e in replayed)
    # Nothing twice, nothing older; new events still flow.
    await back.drain(0.5)
    assert len(back.events()) == 4
    fourth = await agent_reply(app, t, cid, "four")
    live_one = await back.expect(type="event", topic="message.created")
    assert live_one["payload"]["message"]["id"] == fourth


async def test_only_the_visitor_of_the_conversation_may_listen(client, live, admin_conn):
    t = await widget_tenant(client)
    visitor = await open_session(client, t)
    cid = (await start_chat(client, visitor))["conversation"]["id"]
    stranger = await open_session(client, t)
    w = await open_widget(live, stranger, cid)
    assert await closed_with(w.ws) == (4404, "conversation-not-found")

    bad = dict(visitor, visitor_token=visitor["visitor_token"][:-3] + "abc")
    w = await open_widget(live, bad, cid)
    assert await closed_with(w.ws) == (4401, "invalid-visitor-token")

    w = await open_widget(live, visitor, cid, origin="https://elsewhere.example")
    assert await closed_with(w.ws) == (4403, "origin-not-allowed")

    w = await open_widget(live, visitor, "not-a-uuid")
    code, _ = await closed_with(w.ws)
    assert code == 4400

    # No Origin at all: not a page; the upgrade itself is refused.
    with pytest.raises(InvalidStatus) as info:
        await connect(f"{live}/v1/widget/stream")
    assert info.value.response.status_code == 403

    await admin_conn.execute(
        "UPDATE tenants SET status = 'suspended' WHERE id = $1", uuid.UUID(t["tenant"]["id"])
    )
    w = await open_widget(live, visitor, cid)
    assert await closed_with(w.ws) == (4403, "tenant-suspended")


async def test_events_survive_the_hub_losing_its_connection(
    app, client, clean_db, admin_conn, live, widgets
):
    t = await widget_tenant(client)
    visitor = await open_session(client, t)
    cid = (await start_chat(client, visitor))["conversation"]["id"]
    w = await open_widget(live, visitor, cid)
    widgets.append(w)
    await w.expect(type="hello")
    # The listeners of this database's API processes drop; an event is posted meanwhile.
    killed = await admin_conn.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE application_name = 'switchboard-conversation-hub' AND datname = current_database()"
    )
    assert killed >= 1
    r = await client.post(
        f"/v1/widget/conversations/{cid}/messages",
        json={"text": "still there?", "client_message_id": "k-1"},
        headers=visitor["headers"],
    )
    assert r.status_code == 201, r.text
    got = await w.expect(type="event", topic="message.created")
    assert got["payload"]["message"]["id"] == r.json()["message"]["id"]
    await w.drain(0.3)
    assert len(w.events("message.created")) == 1
