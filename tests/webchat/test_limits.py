"""The public widget API's abuse limits: per client address (sessions, stream
connections) and per visitor (messages, page views, new chats, uploads), counted by
every replica together in PostgreSQL, answered 429 ``rate-limited`` with Retry-After."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.live_server import serve
from tests.webchat.conftest import ORIGIN, inside_one_window, visitor_headers, widget_tenant

LOW = {
    "widget_sessions_per_address_per_minute": 3,
    "widget_ws_per_address_per_minute": 2,
    "widget_messages_per_visitor_per_minute": 2,
    "widget_page_views_per_visitor_per_minute": 2,
    "widget_conversations_per_visitor_per_hour": 1,
    "widget_uploads_per_visitor_per_hour": 1,
    "db_pool_size": 2,
    "db_max_overflow": 8,
}


@pytest.fixture(scope="module")
def strict(settings: Any, db_urls: Any) -> Iterator[str]:
    """A server with low widget limits (its clients all come from 127.0.0.1)."""
    with serve(settings.model_copy(update=LOW), db_urls.app) as url:
        yield url


def _limited(r: httpx.Response, window: int) -> None:
    assert r.status_code == 429, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "rate-limited"
    # The seconds left in the current fixed window (one either way for the clock tick).
    left = window - int(time.time()) % window
    assert abs(int(r.headers["retry-after"]) - left) <= 1, (r.headers["retry-after"], left)
    assert r.json()["retry_after"] == int(r.headers["retry-after"])


async def _session(http: httpx.AsyncClient, key: str) -> httpx.Response:
    return await http.post("/v1/widget/sessions", headers={"X-Widget-Key": key, "Origin": ORIGIN})


async def test_sessions_per_address(client, strict, clean_db):
    t = await widget_tenant(client)
    await inside_one_window(60, room=5)
    async with httpx.AsyncClient(base_url=strict) as http:
        for _ in range(3):
            assert (await _session(http, t["widget_key"])).status_code == 201
        _limited(await _session(http, t["widget_key"]), 60)
    # Counted in the platform table, one row per bucket and window.
    rows = await clean_db.fetch("SELECT bucket, count FROM abuse_counters")
    assert [(r["bucket"], r["count"]) for r in rows] == [("address:127.0.0.1:session", 4)]
    # The in-process API (another client address) is not affected.
    r = await client.post(
        "/v1/widget/sessions", headers={"X-Widget-Key": t["widget_key"], "Origin": ORIGIN}
    )
    assert r.status_code == 201


async def _first_chat(http: httpx.AsyncClient, key: str) -> tuple[dict[str, str], str]:
    """A new visitor's headers and their first chat's id."""
    r = await _session(http, key)
    h = visitor_headers(r.json()["visitor_token"])
    r = await http.post("/v1/widget/conversations", json={"text": "one"}, headers=h)
    assert r.status_code == 201, r.text
    return h, r.json()["conversation"]["id"]


async def test_limits_per_visitor(client, strict, clean_db):
    t = await widget_tenant(client)
    await inside_one_window(60, room=8)
    async with httpx.AsyncClient(base_url=strict) as http:
        h, cid = await _first_chat(http, t["widget_key"])
        url = f"/v1/widget/conversations/{cid}/messages"
        r = await http.post(url, json={"text": "two", "client_message_id": "2"}, headers=h)
        assert r.status_code == 201, r.text
        r = await http.post(url, json={"text": "three", "client_message_id": "3"}, headers=h)
        _limited(r, 60)

        for _ in range(2):
            r = await http.post("/v1/widget/page-views", json={"url": f"{ORIGIN}/"}, headers=h)
            assert r.status_code == 201, r.text
        _limited(
            await http.post("/v1/widget/page-views", json={"url": f"{ORIGIN}/"}, headers=h), 60
        )

        upload = {"filename": "a.png", "content_type": "image/png", "size_bytes": 10}
        r = await http.post(f"/v1/widget/conversations/{cid}/attachments", json=upload, headers=h)
        assert r.status_code == 201, r.text
        r = await http.post(f"/v1/widget/conversations/{cid}/attachments", json=upload, headers=h)
        _limited(r, 3600)


async def test_new_chats_per_visitor(client, strict, clean_db):
    t = await widget_tenant(client)
    await inside_one_window(3600, room=8)
    async with httpx.AsyncClient(base_url=strict) as http:
        h, cid = await _first_chat(http, t["widget_key"])
        r = await client.post(f"/v1/conversations/{cid}/resolve", json={}, headers=t["headers"])
        assert r.status_code == 200, r.text
        # A second chat within the hour is one too many; nothing was opened for it.
        r = await http.post("/v1/widget/conversations", json={"text": "again"}, headers=h)
        _limited(r, 3600)
    assert await clean_db.fetchval("SELECT count(*) FROM conversations") == 1
    assert await clean_db.fetchval("SELECT count(*) FROM messages") == 1


async def test_stream_connections_per_address(client, strict):
    await inside_one_window(60, room=5)
    base = strict.replace("http://", "ws://") + "/v1/widget/stream"
    for _ in range(2):  # counted at the upgrade, whatever follows
        async with connect(base, additional_headers={"Origin": ORIGIN}) as ws:
            await ws.send(json.dumps({"type": "auth", "token": "x", "conversation_id": "y"}))
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 10)
            assert info.value.rcvd is not None and info.value.rcvd.code == 4400
    async with connect(base, additional_headers={"Origin": ORIGIN}) as ws:
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 10)
        assert info.value.rcvd is not None
        assert (info.value.rcvd.code, info.value.rcvd.reason) == (4429, "rate-limited")
