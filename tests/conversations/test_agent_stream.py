"""The agent desktop's WebSocket and conversations, against a real server: an offer of a
conversation carries its context; the desktop accepts, replies, notes, types and ends the
work with ``conversation.*`` commands; a supervisor opens the stream to monitor,
read-only."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.conftest import create_user, login
from tests.conversations.desk import (
    VISITOR,
    customer_writes,
    tenant_sql,
    webchat_channel,
    worker,  # noqa: F401 - the fixture
)
from tests.live_server import serve
from tests.routing.conftest import staffed_tenant
from tests.routing.test_stream import SMALL_POOL, Desktop
from tests.stream_client import close_all

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture(scope="module")
def live(settings: Any, db_urls: Any) -> Iterator[str]:
    with serve(settings.model_copy(update=SMALL_POOL), db_urls.app) as url:
        yield url.replace("http://", "ws://")


@pytest.fixture
async def desktops() -> AsyncIterator[list[Desktop]]:
    opened: list[Desktop] = []
    yield opened
    await close_all(opened)


async def open_desktop(base: str, token: str, opened: list[Desktop]) -> tuple[Desktop, Any]:
    ws = await connect(
        f"{base}/v1/agent/stream", additional_headers={"Authorization": f"Bearer {token}"}
    )
    desk = Desktop(ws)
    opened.append(desk)
    hello = await desk.expect(type="hello")
    return desk, hello


async def with_history(app: Any, t: dict[str, Any], chat: dict[str, Any]) -> uuid.UUID:
    """A visitor who browsed three pages, consented to email, then wrote."""
    got = await customer_writes(app, t, chat)
    tid = uuid.UUID(t["tenant"]["id"])
    rows = await tenant_sql(
        app,
        t,
        "SELECT c.customer_id, i.id AS identity_id FROM conversations c "
        "JOIN customer_identities i ON i.customer_id = c.customer_id AND i.value = $1 "
        "WHERE c.id = $2",
        VISITOR,
        got.conversation_id,
    )
    customer_id, identity_id = rows[0]["customer_id"], rows[0]["identity_id"]
    for minutes, url in ((9, "/shoes"), (7, "/shoes/red-42"), (5, "/checkout")):
        await tenant_sql(
            app,
            t,
            "INSERT INTO page_views (tenant_id, id, customer_id, identity_id, channel_id, url, "
            "title, at, attributes) VALUES ($1, $2, $3, $4, $5, $6, $7, "
            "now() - make_interval(mins => $8), '{}'::jsonb)",
            tid,
            uuid.uuid4(),
            customer_id,
            identity_id,
            uuid.UUID(chat["id"]),
            "https://shop.example.com" + url,
            url.strip("/").title(),
            minutes,
        )
    await tenant_sql(
        app,
        t,
        "INSERT INTO customer_consents (tenant_id, customer_id, channel, status, source, "
        "updated_at) VALUES ($1, $2, 'email', 'granted', 'checkout', now())",
        tid,
        customer_id,
    )
    return got.conversation_id


async def test_an_offer_carries_its_context_and_the_desktop_works_the_conversation(
    app: Any, client: httpx.AsyncClient, live: str, desktops: list[Desktop]
) -> None:
    t = await staffed_tenant(client, agents=1, queue={"wrap_up_codes": ["Resolved"]})
    chat = await webchat_channel(client, t, t["queue"]["id"])
    cid = await with_history(app, t, chat)
    ana = t["agents"][0]
    desk, _ = await open_desktop(live, ana["access_token"], desktops)
    r = await desk.call("set_state", status="available")
    assert r["type"] == "result", r

    offer = await desk.expect(type="event", topic="offer.created")
    payload = offer["payload"]
    assert payload["conversation_id"] == str(cid)
    ctx = payload["context"]
    assert ctx["customer"]["display_name"] == "Carla Customer"
    assert ctx["customer"]["identities"] == [
        {"kind": "webchat", "value": VISITOR, "verified": False, "bounced": False}
    ]
    assert [(c["channel"], c["status"]) for c in ctx["customer"]["consents"]] == [
        ("email", "granted")
    ]
    assert [p["title"] for p in ctx["page_trail"]] == ["Shoes", "Shoes/Red-42", "Checkout"]
    assert [m["body"] for m in ctx["messages"]] == ["Hello, my order 4711 never arrived"]
    assert "message.received" in [i["kind"] for i in ctx["recent_interactions"]]
    assert ctx["flow_answers"] == {} and ctx["transfer"] is None

    r = await desk.call("accept", reservation_id=payload["reservation_id"])
    assert r["type"] == "result", r
    await desk.expect(type="event", topic="conversation.assigned")

    r = await desk.call("conversation.reply", conversation_id=str(cid), text="Hi Carla!")
    assert r["type"] == "result" and r["message"]["status"] == "sent", r
    r = await desk.call("conversation.note", conversation_id=str(cid), text="Shoe size 42")
    assert r["type"] == "result" and r["message"]["direction"] == "internal", r
    r = await desk.call("conversation.typing", conversation_id=str(cid))
    assert r == {"type": "result", "ref": r["ref"], "ok": True, "sent": True}

    # Bad commands answer errors naming the key; the connection stays.
    r = await desk.call("conversation.reply", conversation_id=str(cid), text="")
    assert (r["type"], r["status"], r["field"]) == ("error", 422, "text")
    r = await desk.call("conversation.reply", text="no id")
    assert (r["status"], r["field"]) == (422, "conversation_id")
    r = await desk.call("conversation.resolve", conversation_id=str(cid), wrap_up_code="Nope")
    assert (r["status"], r["field"]) == (422, "wrap_up_code")
    r = await desk.call("conversation.pending", conversation_id=str(cid), extra=1)
    assert (r["status"], r["field"]) == (422, "extra")
    r = await desk.call("conversation.fly", conversation_id=str(cid))
    assert (r["status"], r["code"]) == (422, "unknown-command")
    r = await desk.call("conversation.reply", conversation_id=str(uuid.uuid4()), text="x")
    assert (r["status"], r["code"]) == (404, "conversation-not-found")

    r = await desk.call("conversation.resolve", conversation_id=str(cid), wrap_up_code="resolved")
    assert r["type"] == "result", r
    assert (r["conversation"]["state"], r["conversation"]["wrap_up_code"]) == (
        "resolved",
        "Resolved",
    )
    done = await desk.expect(type="event", topic="work.completed")
    assert done["payload"]["reservation_id"] == payload["reservation_id"]


async def test_a_supervisor_monitors_from_the_stream_and_cannot_write(
    app: Any, client: httpx.AsyncClient, live: str, desktops: list[Desktop]
) -> None:
    t = await staffed_tenant(client, agents=1)
    chat = await webchat_channel(client, t, t["queue"]["id"])
    got = await customer_writes(app, t, chat)
    cid = str(got.conversation_id)
    ana = t["agents"][0]
    ana_desk, _ = await open_desktop(live, ana["access_token"], desktops)
    await ana_desk.call("set_state", status="available")
    offer = await ana_desk.expect(type="event", topic="offer.created")
    await ana_desk.call("accept", reservation_id=offer["payload"]["reservation_id"])

    sup = await create_user(app, t, "supervisor")
    token = (await login(client, sup["email"]))["access_token"]
    desk, hello = await open_desktop(live, token, desktops)
    assert hello["presence"] is None
    for kind, fields in (
        ("set_state", {"status": "available"}),
        ("heartbeat", {}),
        ("accept", {"reservation_id": offer["payload"]["reservation_id"]}),
    ):
        r = await desk.call(kind, **fields)
        assert (r["status"], r["code"]) == (403, "agent-only"), kind

    r = await desk.call("conversation.monitor", conversation_id=cid)
    assert r["type"] == "result", r
    assert [p["role"] for p in r["conversation"]["participants"]][-1] == "monitor"
    r = await ana_desk.call("conversation.reply", conversation_id=cid, text="How can I help?")
    assert r["type"] == "result", r
    seen = await desk.expect(type="event", topic="conversation.message.created")
    assert seen["payload"]["message"]["body"] == "How can I help?"
    for kind, fields in (
        ("conversation.note", {"text": "psst"}),
        ("conversation.reply", {"text": "Hello from the supervisor"}),
        ("conversation.typing", {}),
        ("conversation.resolve", {}),
    ):
        r = await desk.call(kind, conversation_id=cid, **fields)
        assert (r["status"], r["code"]) == (403, "read-only-participant"), kind
    # Silent monitoring: the agent was not told.
    await ana_desk.drain(0.3)
    assert not [e for e in ana_desk.events() if "monitor" in json.dumps(e["payload"])]
    r = await desk.call("conversation.monitor", conversation_id=cid, stop=True)
    assert r["type"] == "result"
    assert [p["state"] for p in r["conversation"]["participants"]][-1] == "left"
