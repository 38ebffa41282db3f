"""The agent desktop's WebSocket, GET /v1/agent/stream, against a real server (uvicorn in a
thread) with a routing worker in the test's loop: what a desktop app sees."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from app.auth import jwt_keys
from app.core import notify_hub, socket_stream
from app.routing import stream
from tests.conftest import create_user, login
from tests.live_server import serve
from tests.routing.conftest import running_router, staffed_tenant, wait_for
from tests.stream_client import StreamClient, close_all, closed_with

SHORT_GRACE = 3.0


# The database server is shared: these servers keep few idle connections.
SMALL_POOL = {"db_pool_size": 2, "db_max_overflow": 8}


@pytest.fixture(scope="module")
def live(settings: Any, db_urls: Any) -> Iterator[str]:
    with serve(settings.model_copy(update=SMALL_POOL), db_urls.app) as url:
        yield url.replace("http://", "ws://")


@pytest.fixture(scope="module")
def live_short_grace(settings: Any, db_urls: Any) -> Iterator[str]:
    """A server whose agents must heartbeat every few seconds."""
    quick = settings.model_copy(
        update={"routing_heartbeat_grace_seconds": SHORT_GRACE} | SMALL_POOL
    )
    with serve(quick, db_urls.app) as url:
        yield url.replace("http://", "ws://")


class Desktop(StreamClient):
    """An agent desktop on the socket."""


async def open_desktop(base: str, token: str, *, since: int | None = None) -> Desktop:
    url = f"{base}/v1/agent/stream" + (f"?since={since}" if since is not None else "")
    ws = await connect(url, additional_headers={"Authorization": f"Bearer {token}"})
    desk = Desktop(ws)
    await desk.expect(type="hello")
    return desk


@pytest.fixture
async def desktops() -> AsyncIterator[list[Desktop]]:
    """Desktops opened by a test; closed at its end."""
    opened: list[Desktop] = []
    yield opened
    await close_all(opened)


async def enqueue(client: httpx.AsyncClient, t: dict[str, Any], channel: str = "voice") -> str:
    r = await client.post(
        "/v1/contacts",
        json={"channel": channel, "queue_id": t["queue"]["id"], "customer_ref": "cust-1"},
        headers=t["headers"],
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def contact_state(client: httpx.AsyncClient, t: dict[str, Any], cid: str) -> str:
    r = await client.get(f"/v1/contacts/{cid}", headers=t["headers"])
    assert r.status_code == 200, r.text
    return str(r.json()["state"])


async def set_presence(client: httpx.AsyncClient, agent: dict[str, Any], **body: Any) -> None:
    r = await client.put("/v1/agent/presence", json=body, headers=agent["headers"])
    assert r.status_code == 200, r.text


# ---------------------------------------------------------------------------- auth


async def test_an_agent_signs_in_by_header_or_by_first_message(client, live):
    t = await staffed_tenant(client, agents=1)
    agent = t["agents"][0]
    async with connect(
        f"{live}/v1/agent/stream",
        additional_headers={"Authorization": f"Bearer {agent['access_token']}"},
    ) as ws:
        hello = await Desktop(ws).expect(type="hello")
    assert hello["agent_id"] == agent["id"]
    assert hello["presence"]["status"] == "offline"
    assert hello["heartbeat_seconds"] == pytest.approx(30.0 / 3)
    async with connect(f"{live}/v1/agent/stream") as ws:
        await ws.send(json.dumps({"type": "auth", "token": agent["access_token"]}))
        hello = await Desktop(ws).expect(type="hello")
    assert hello["agent_id"] == agent["id"]


async def test_bad_or_expired_tokens_close_with_4401(client, app, live, settings):
    t = await staffed_tenant(client, agents=1)
    agent = t["agents"][0]
    now = int(time.time())
    expired = jwt_keys.encode(
        app.state.signing_keys,
        {
            "iss": settings.jwt_issuer,
            "sub": agent["id"],
            "tid": t["tenant"]["id"],
            "role": "agent",
            "typ": "access",
            "iat": now - 3600,
            "exp": now - 60,
        },
    )
    for token in ("not-a-token", expired):
        headers = {"Authorization": f"Bearer {token}"}
        async with connect(f"{live}/v1/agent/stream", additional_headers=headers) as ws:
            assert await closed_with(ws) == (4401, "invalid-credentials")
        async with connect(f"{live}/v1/agent/stream") as ws:
            await ws.send(json.dumps({"type": "auth", "token": token}))
            assert await closed_with(ws) == (4401, "invalid-credentials")
    async with connect(f"{live}/v1/agent/stream") as ws:
        await ws.send(json.dumps({"type": "heartbeat"}))
        assert await closed_with(ws) == (4401, "auth-required")


async def test_api_keys_and_suspended_tenants_get_4403(client, app, admin_conn, live):
    t = await staffed_tenant(client, agents=1)
    headers = {"Authorization": f"Bearer {t['api_key']}"}
    async with connect(f"{live}/v1/agent/stream", additional_headers=headers) as ws:
        assert await closed_with(ws) == (4403, "agent-only")
    # An admin signs in to monitor conversations (no presence, no routing work).
    admin = await create_user(app, t, "admin")
    headers = {"Authorization": f"Bearer {(await login(client, admin['email']))['access_token']}"}
    async with connect(f"{live}/v1/agent/stream", additional_headers=headers) as ws:
        hello = await Desktop(ws).expect(type="hello")
    assert hello["presence"] is None
    await admin_conn.execute(
        "UPDATE tenants SET status = 'suspended' WHERE id = $1", uuid.UUID(t["tenant"]["id"])
    )
    headers = {"Authorization": f"Bearer {t['agents'][0]['access_token']}"}
    async with connect(f"{live}/v1/agent/stream", additional_headers=headers) as ws:
        assert await closed_with(ws) == (4403, "tenant-suspended")


async def test_no_credentials_in_time_closes(client, live, monkeypatch):
    monkeypatch.setattr(stream, "AUTH_TIMEOUT_SECONDS", 0.3)
    async with connect(f"{live}/v1/agent/stream") as ws:
        assert await closed_with(ws) == (4401, "auth-timeout")


async def test_a_bad_since_closes_with_4400(client, live):
    t = await staffed_tenant(client, agents=1)
    headers = {"Authorization": f"Bearer {t['agents'][0]['access_token']}"}
    for since in ("-1", "abc", str(2**64)):
        url = f"{live}/v1/agent/stream?since={since}"
        async with connect(url, additional_headers=headers) as ws:
            code, _ = await closed_with(ws)
            assert code == 4400


# ---------------------------------------------------------------------------- work


async def test_offer_accept_complete_and_wrap_up_over_the_socket(client, db_urls, live, desktops):
    t = await staffed_tenant(
        client, agents=1, queue={"wrap_up_seconds": 300, "wrap_up_codes": ["Resolved"]}
    )
    agent = t["agents"][0]
    desk = await open_desktop(live, agent["access_token"])
    desktops.append(desk)
    r = await desk.call("set_state", status="available")
    assert r["ok"] is True and r["presence"]["status"] == "available"
    assert r["presence"]["heartbeat_expires_at"] is not None
    await desk.expect(type="event", topic="presence.changed", payload={"status": "available"})
    async with running_router(db_urls):
        cid = await enqueue(client, t, "chat")
        offer = await desk.expect(type="event", topic="offer.created")
        p = offer["payload"]
        assert p["contact_id"] == cid and p["channel"] == "chat" and p["expires_at"]
        rid = p["reservation_id"]

        r = await desk.call("accept", reservation_id=rid)
        assert r["ok"] is True and r["reservation"]["state"] == "in_progress"
        assert await contact_state(client, t, cid) == "in_progress"
        await desk.expect(type="event", topic="offer.accepted", payload={"reservation_id": rid})

        r = await desk.call("complete", reservation_id=rid)
        assert r["reservation"]["state"] == "wrap_up"
        await desk.expect(type="event", topic="work.wrap_up", payload={"reservation_id": rid})
        r = await desk.call("wrap_up", reservation_id=rid, code="Sold a boat")
        assert (r["type"], r["status"], r["field"]) == ("error", 422, "code")
        r = await desk.call("wrap_up", reservation_id=rid, code="resolved")
        assert r["reservation"]["state"] == "completed"
        await desk.expect(type="event", topic="work.completed", payload={"reservation_id": rid})
    got = (await client.get(f"/v1/contacts/{cid}", headers=t["headers"])).json()
    assert (got["state"], got["wrap_up_code"]) == ("completed", "Resolved")


async def test_a_rejected_offer_goes_back_to_the_queue(client, db_urls, live, desktops):
    t = await staffed_tenant(client, agents=1)
    desk = await open_desktop(live, t["agents"][0]["access_token"])
    desktops.append(desk)
    await desk.call("set_state", status="available")
    async with running_router(db_urls):
        cid = await enqueue(client, t)
        offer = await desk.expect(type="event", topic="offer.created")
        rid = offer["payload"]["reservation_id"]
        r = await desk.call("reject", reservation_id=rid)
        assert r["ok"] is True and r["reservation"]["state"] == "rejected"
        await desk.expect(type="event", topic="offer.rejected", payload={"reservation_id": rid})
        # Not offered to the same agent again at once: the contact waits in line.
        assert await contact_state(client, t, cid) == "queued"
        r = await desk.call("accept", reservation_id=rid)
        assert (r["status"], r["code"]) == (409, "reservation-not-offered")


async def test_errors_name_the_command_and_keep_the_connection(client, live, desktops):
    t = await staffed_tenant(client, agents=1)
    desk = await open_desktop(live, t["agents"][0]["access_token"])
    desktops.append(desk)
    r = await desk.call("accept", reservation_id=str(uuid.uuid4()))
    assert (r["type"], r["status"], r["code"]) == ("error", 404, "reservation-not-found")
    r = await desk.call("reject", reservation_id="not-a-uuid")
    assert (r["status"], r["code"], r["field"]) == (422, "validation-failed", "reservation_id")
    r = await desk.call("complete")
    assert (r["status"], r["field"]) == (422, "reservation_id")
    r = await desk.call("teleport")
    assert (r["status"], r["code"], r["field"]) == (422, "unknown-command", "type")
    r = await desk.call("set_state", status="break")
    assert (r["status"], r["field"]) == (422, "break_reason")
    r = await desk.call("set_state", status="napping")
    assert (r["status"], r["field"]) == (422, "status")
    r = await desk.call("set_state", status="break", break_reason="lunch\x00")
    assert (r["status"], r["code"], r["field"]) == (422, "validation-failed", "break_reason")
    await desk.ws.send("{not json")
    r = await desk.expect(type="error")
    assert (r["status"], r["code"]) == (400, "bad-json")
    await desk.ws.send(b"\x00\x01")
    r = await desk.expect(type="error")
    assert (r["status"], r["code"]) == (400, "bad-message")
    await desk.ws.send("[1, 2]")
    assert (await desk.expect(type="error"))["code"] == "bad-message"
    # Still connected and working.
    r = await desk.call("set_state", status="break", break_reason="lunch")
    assert r["ok"] is True and r["presence"]["break_reason"] == "lunch"


async def test_time_outs_arrive_and_three_in_a_row_mean_a_break(client, db_urls, live, desktops):
    t = await staffed_tenant(client, agents=1)
    desk = await open_desktop(live, t["agents"][0]["access_token"])
    desktops.append(desk)
    await desk.call("set_state", status="available")
    async with running_router(db_urls, offer_timeout_seconds=0.3):
        # Voice takes the whole capacity: one offer at a time, each missed in turn.
        for _ in range(3):
            await enqueue(client, t, "voice")
        for _ in range(3):
            offer = await desk.expect(type="event", topic="offer.created")
            rid = offer["payload"]["reservation_id"]
            gone = await desk.expect(
                type="event", topic="offer.timed_out", payload={"reservation_id": rid}
            )
            assert gone["payload"]["reason"] == "ring-no-answer"
        brk = await desk.expect(type="event", topic="presence.changed", payload={"status": "break"})
    assert brk["payload"] == {"status": "break", "break_reason": "missed-offers"}
    r = await client.get("/v1/agent/presence", headers=t["agents"][0]["headers"])
    assert (r.json()["status"], r.json()["break_reason"]) == ("break", "missed-offers")


# ---------------------------------------------------------------------------- resume


async def test_a_reconnect_with_since_replays_what_was_missed_once(client, db_urls, live, desktops):
    t = await staffed_tenant(client, agents=1)
    agent = t["agents"][0]
    desk = await open_desktop(live, agent["access_token"])
    await desk.call("set_state", status="available")
    last = (await desk.expect(type="event", topic="presence.changed"))["id"]
    await desk.ws.close()
    async with running_router(db_urls):
        cid = await enqueue(client, t)

        async def offered() -> bool:
            r = await client.get("/v1/agent/presence", headers=agent["headers"])
            return any(x["state"] == "offered" for x in r.json()["reservations"])

        await wait_for(offered, timeout=10)
        await set_presence(client, agent, status="break", break_reason="coffee")
        desk = await open_desktop(live, agent["access_token"], since=last)
        desktops.append(desk)
        await desk.expect(type="event", topic="presence.changed", payload={"status": "break"})
        # And live events follow the replay.
        await desk.call("set_state", status="available")
        await desk.expect(type="event", topic="presence.changed", payload={"status": "available"})
        await desk.drain()
    events = desk.events()
    ids = [e["id"] for e in events]
    assert ids == sorted(set(ids)), "each event once, in order"
    assert all(i > last for i in ids)
    assert events[0]["payload"]["contact_id"] == cid
    assert [e["topic"] for e in events][:4] == [
        "offer.created",
        "offer.rescinded",
        "presence.changed",
        "presence.changed",
    ]


async def test_too_much_missed_replays_the_newest_after_a_gap(client, live, monkeypatch, desktops):
    monkeypatch.setattr(stream, "REPLAY_LIMIT", 2)
    t = await staffed_tenant(client, agents=1)
    agent = t["agents"][0]
    for reason in ("a", "b", "c", "d"):
        await set_presence(client, agent, status="break", break_reason=reason)
    desk = await open_desktop(live, agent["access_token"], since=0)
    desktops.append(desk)
    gap = await desk.expect(type="gap")
    assert gap["presence"]["break_reason"] == "d"
    await desk.drain()
    assert [e["payload"]["break_reason"] for e in desk.events()] == ["c", "d"]


async def test_a_burst_beyond_the_pending_bound_still_arrives_once(
    client, db_urls, live, monkeypatch, desktops
):
    """A consumer that falls behind catches up from the table: nothing lost or doubled."""
    monkeypatch.setattr(notify_hub, "MAX_PENDING", 1)
    monkeypatch.setattr(socket_stream, "SENT_WINDOW", 2)
    t = await staffed_tenant(client, agents=1)
    agent = t["agents"][0]
    desk = await open_desktop(live, agent["access_token"])
    desktops.append(desk)
    await desk.call("set_state", status="available")
    async with running_router(db_urls):
        await enqueue(client, t, "chat")
        await enqueue(client, t, "chat")
        await desk.expect(type="event", topic="offer.created")
        await desk.expect(type="event", topic="offer.created")
        # One transaction, three events: two rescinds and the break.
        await set_presence(client, agent, status="break", break_reason="lunch")
        await desk.expect(type="event", topic="presence.changed", payload={"status": "break"})
        await desk.drain()
    ids = [e["id"] for e in desk.events()]
    assert ids == sorted(set(ids))
    assert len(desk.events("offer.rescinded")) == 2


# ---------------------------------------------------------------------------- heartbeats


async def test_a_heartbeat_moves_the_deadline(client, live_short_grace, desktops):
    t = await staffed_tenant(client, agents=1)
    agent = t["agents"][0]
    desk = await open_desktop(live_short_grace, agent["access_token"])
    desktops.append(desk)
    went = (await desk.call("set_state", status="available"))["presence"]
    before = went["heartbeat_expires_at"]
    await asyncio.sleep(SHORT_GRACE / 10 + 0.1)  # past the per-connection write throttle
    r = await desk.call("heartbeat")
    assert (r["ok"], r["status"]) == (True, "available")
    r = await client.get("/v1/agent/presence", headers=agent["headers"])
    after = r.json()["heartbeat_expires_at"]
    assert datetime.fromisoformat(after) > datetime.fromisoformat(before)


async def test_silence_past_the_grace_signs_out_and_rescinds(
    client, db_urls, live_short_grace, desktops
):
    t = await staffed_tenant(client, agents=1)
    agent = t["agents"][0]
    desk = await open_desktop(live_short_grace, agent["access_token"])
    desktops.append(desk)
    await desk.call("set_state", status="available")
    async with running_router(db_urls):
        await enqueue(client, t)
        # Heartbeats keep the agent in until the offer is there, then silence.
        for _ in range(100):
            if desk.events("offer.created"):
                break
            assert (await desk.call("heartbeat"))["status"] == "available"
            with pytest.raises(AssertionError):
                await desk.expect(within=SHORT_GRACE / 4, type="event", topic="none")
        rid = desk.events("offer.created")[0]["payload"]["reservation_id"]
        off = await desk.expect(
            within=SHORT_GRACE + 10,
            type="event",
            topic="presence.changed",
            payload={"status": "offline"},
        )
        assert off["payload"] == {"status": "offline", "reason": "heartbeat-lost"}
        gone = await desk.expect(
            type="event", topic="offer.rescinded", payload={"reservation_id": rid}
        )
        assert gone["payload"]["reason"] == "agent-offline"
    r = await client.get("/v1/agent/presence", headers=agent["headers"])
    assert r.json()["status"] == "offline"


# ---------------------------------------------------------------------------- isolation


async def test_an_agent_hears_only_their_own_events(client, db_urls, admin_conn, live, desktops):
    a = await staffed_tenant(client, agents=2)
    b = await staffed_tenant(client, agents=1)
    x, y, z = a["agents"][0], a["agents"][1], b["agents"][0]
    dx = await open_desktop(live, x["access_token"])
    dy = await open_desktop(live, y["access_token"])
    desktops.extend([dx, dy])
    async with running_router(db_urls):
        for agent in (y, z):
            await set_presence(client, agent, status="available")
        await enqueue(client, a)
        await enqueue(client, b)
        await dy.expect(type="event", topic="offer.created")

        async def z_offered() -> bool:
            r = await client.get("/v1/agent/presence", headers=z["headers"])
            return bool(r.json()["reservations"])

        await wait_for(z_offered, timeout=10)
    # X's own change comes after the others' in commit order: a barrier.
    await set_presence(client, x, status="break", break_reason="training")
    await dx.expect(type="event", topic="presence.changed")
    await dx.drain()
    # Even asking for everything since the start replays only X's events.
    replay = await open_desktop(live, x["access_token"], since=0)
    desktops.append(replay)
    await replay.drain()
    ids = [e["id"] for e in dx.events() + replay.events()]
    owners = await admin_conn.fetch("SELECT agent_id FROM outbox_events WHERE id = ANY($1)", ids)
    assert {str(o["agent_id"]) for o in owners} == {x["id"]}
    assert [e["topic"] for e in dx.events()] == ["presence.changed"]


# ---------------------------------------------------------------------------- hub


async def test_events_survive_the_hub_losing_its_database_connection(
    client, admin_conn, admin_is_superuser, live, desktops
):
    if not admin_is_superuser:
        pytest.skip("terminating another role's backend needs a superuser")
    t = await staffed_tenant(client, agents=1)
    agent = t["agents"][0]
    desk = await open_desktop(live, agent["access_token"])
    desktops.append(desk)

    async def hubs() -> list[int]:
        rows = await admin_conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = 'switchboard-hub'"
        )
        return [r["pid"] for r in rows]

    old = await wait_for(hubs, timeout=10)
    await admin_conn.execute("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) pid", old)
    # Emitted while no hub listens: the reconnected hub has the connection catch up.
    await set_presence(client, agent, status="break", break_reason="gap")
    got = await desk.expect(type="event", topic="presence.changed")
    assert got["payload"]["break_reason"] == "gap"

    async def renewed() -> bool:
        now = await hubs()
        return bool(now) and not set(now) & set(old)

    await wait_for(renewed, timeout=10)
    await set_presence(client, agent, status="break", break_reason="after")
    got = await desk.expect(type="event", topic="presence.changed")
    assert got["payload"]["break_reason"] == "after"
    await desk.drain()
    assert len(desk.events()) == 2


def _short_token(app: Any, settings: Any, t: dict[str, Any], agent_id: str, seconds: int) -> str:
    now = int(time.time())
    return jwt_keys.encode(
        app.state.signing_keys,
        {
            "iss": settings.jwt_issuer,
            "sub": agent_id,
            "tid": t["tenant"]["id"],
            "role": "agent",
            "typ": "access",
            "iat": now,
            "exp": now + seconds,
            "jti": uuid.uuid4().hex,
        },
    )


async def test_the_session_ends_with_its_token_unless_renewed(client, app, live, settings):
    t = await staffed_tenant(client, agents=2)
    agent, other = t["agents"]
    # Renewed in time (with a token of the same agent only): the socket stays.
    desk = await open_desktop(live, _short_token(app, settings, t, agent["id"], 2))
    try:
        refused = await desk.call("auth", token=_short_token(app, settings, t, other["id"], 60))
        assert (refused["type"], refused["status"], refused["code"]) == (
            "error",
            401,
            "invalid-credentials",
        )
        renewed = await desk.call("auth", token=_short_token(app, settings, t, agent["id"], 60))
        assert renewed["ok"] and renewed["expires_at"]
        await asyncio.sleep(2.5)
        assert (await desk.call("heartbeat"))["ok"]
    finally:
        await desk.ws.close()
    # Not renewed: told, then closed with 4401 token-expired.
    desk = await open_desktop(live, _short_token(app, settings, t, agent["id"], 2))
    await desk.expect(within=10, type="auth.expired")
    assert await closed_with(desk.ws) == (4401, "token-expired")
