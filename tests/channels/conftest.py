"""Channel test helpers: phone numbers inserted directly (the phone-number API is
another domain's), and a short way to create channels through the API."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import pytest

AddNumber = Callable[..., Awaitable[str]]


@pytest.fixture
def add_number(admin_conn: asyncpg.Connection) -> AddNumber:
    """Insert a phone number held by ``tenant``; returns its id."""
    counter = iter(range(1000, 10000))

    async def add(tenant: dict[str, Any], *, status: str = "active") -> str:
        number_id = uuid.uuid4()
        await admin_conn.execute(
            "INSERT INTO phone_numbers (tenant_id, id, version, created_at, updated_at, e164,"
            " country, number_type, carrier, status, claimed_at)"
            " VALUES ($1, $2, 1, now(), now(), $3, 'US', 'local', 'sandbox', $4, now())",
            uuid.UUID(tenant["tenant"]["id"]),
            number_id,
            f"+1555010{next(counter)}",
            status,
        )
        return str(number_id)

    return add


WEBCHAT = {
    "type": "webchat",
    "name": "Website chat",
    "config": {"allowed_origins": ["https://www.acme.example"], "greeting": "Hi there"},
}


def sms(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "sms",
        "name": "Text us",
        "config": {"provider": "twilio", "provider_account_id": "AC" + uuid.uuid4().hex},
        "credentials": {"auth_token": "tw-" + uuid.uuid4().hex},
    }
    return body | over


async def create_channel(
    client: httpx.AsyncClient, tenant: dict[str, Any], body: dict[str, Any], **headers: str
) -> dict[str, Any]:
    r = await client.post("/v1/channels", json=body, headers=tenant["headers"] | headers)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out
