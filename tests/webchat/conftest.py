"""Factories for the widget tests: a staffed tenant with a web chat channel routed to its
queue, and visitor sessions opened the way the widget opens them."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest

from tests.routing.conftest import staffed_tenant

ORIGIN = "https://shop.example.com"
WILDCARD = "https://*.acme.example"


async def webchat_channel(
    client: httpx.AsyncClient, tenant: dict[str, Any], **config: Any
) -> dict[str, Any]:
    body = {
        "type": "webchat",
        "name": f"Chat {uuid.uuid4().hex[:6]}",
        "config": {
            "allowed_origins": [ORIGIN, WILDCARD],
            "greeting": "Hi! How can we help?",
            "theme": "#0055ff",
            "queue_id": tenant["queue"]["id"],
        }
        | config,
    }
    r = await client.post("/v1/channels", json=body, headers=tenant["headers"])
    assert r.status_code == 201, r.text
    channel: dict[str, Any] = r.json()
    return channel


async def widget_tenant(client: httpx.AsyncClient, *, agents: int = 1) -> dict[str, Any]:
    """A staffed tenant (a queue taking chat, a profile, agents) and its chat widget."""
    tenant = await staffed_tenant(client, agents=agents)
    tenant["channel"] = await webchat_channel(client, tenant)
    tenant["widget_key"] = tenant["channel"]["config"]["widget_key"]
    return tenant


def visitor_headers(token: str, origin: str = ORIGIN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Origin": origin}


async def open_session(
    client: httpx.AsyncClient, tenant: dict[str, Any], origin: str = ORIGIN, **body: Any
) -> dict[str, Any]:
    """POST /v1/widget/sessions as the widget does; the body plus ``headers``."""
    r = await client.post(
        "/v1/widget/sessions",
        json=body,
        headers={"X-Widget-Key": tenant["widget_key"], "Origin": origin},
    )
    assert r.status_code == 201, r.text
    session: dict[str, Any] = r.json()
    session["headers"] = visitor_headers(session["visitor_token"], origin)
    return session


async def start_chat(
    client: httpx.AsyncClient, visitor: dict[str, Any], text: str = "Hello, I need help"
) -> dict[str, Any]:
    r = await client.post(
        "/v1/widget/conversations", json={"text": text}, headers=visitor["headers"]
    )
    assert r.status_code == 201, r.text
    started: dict[str, Any] = r.json()
    return started


async def inside_one_window(seconds: int, room: float = 3.0) -> None:
    """Wait, if needed, until at least ``room`` seconds remain in the current fixed
    window of ``seconds`` (so a test's requests all count in one window)."""
    left = seconds - time.time() % seconds
    if left < room:
        await asyncio.sleep(left + 0.05)


@pytest.fixture
async def widget(client: httpx.AsyncClient) -> dict[str, Any]:
    return await widget_tenant(client)
