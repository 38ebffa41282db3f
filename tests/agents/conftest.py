from __future__ import annotations

import re
from typing import Any

import httpx

from tests.conftest import unique_email

TOKEN = re.compile(r"\bsbi_[A-Za-z0-9_-]{87}\b")


async def invite(
    client: httpx.AsyncClient, tenant: dict[str, Any], **fields: Any
) -> dict[str, Any]:
    """Invite an agent through the API; returns the agent as the API shows it."""
    body = {"email": unique_email("agent"), "display_name": "Ana Agent"} | fields
    r = await client.post("/v1/agents", json=body, headers=tenant["headers"])
    assert r.status_code == 201, r.text
    agent: dict[str, Any] = r.json()
    return agent


async def invitation_mails(
    client: httpx.AsyncClient, tenant: dict[str, Any], email: str
) -> list[dict[str, Any]]:
    """The invitation mails to ``email`` in the tenant's dev outbox, newest first."""
    r = await client.get("/v1/dev/outbox", params={"limit": 200}, headers=tenant["headers"])
    assert r.status_code == 200, r.text
    return [
        m for m in r.json()["items"] if m["kind"] == "agent-invitation" and m["to_address"] == email
    ]


async def invitation_token(client: httpx.AsyncClient, tenant: dict[str, Any], email: str) -> str:
    mails = await invitation_mails(client, tenant, email)
    assert mails, f"no invitation mail to {email}"
    match = TOKEN.search(mails[0]["body_text"])
    assert match, mails[0]["body_text"]
    return match.group(0)
