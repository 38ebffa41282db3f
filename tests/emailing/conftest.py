"""Email test helpers: an email channel made through the API, and a staffed tenant with
one routed to its queue (``mailbox``)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.routing.conftest import staffed_tenant


async def email_channel(
    client: httpx.AsyncClient, tenant: dict[str, Any], **config: Any
) -> dict[str, Any]:
    body = {
        "type": "email",
        "name": f"Mail {uuid.uuid4().hex[:6]}",
        "config": {"local_part": f"help-{uuid.uuid4().hex[:8]}"} | config,
    }
    r = await client.post("/v1/channels", json=body, headers=tenant["headers"])
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


@pytest.fixture
async def mailbox(client: httpx.AsyncClient) -> dict[str, Any]:
    """A staffed tenant and an email channel routed to its queue."""
    t = await staffed_tenant(client, agents=1)
    channel = await email_channel(client, t, queue_id=t["queue"]["id"])
    return {"tenant": t, "channel": channel, "address": channel["config"]["address"]}
