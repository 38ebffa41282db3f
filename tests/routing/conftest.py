"""Factories for routing tests: a staffed tenant, agents who can log in, and an
in-process routing worker against the test database (as the routing workers' role)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from app.db import bootstrap
from app.routing.worker import Router, RouterConfig
from tests.agents.conftest import invitation_token, invite
from tests.conftest import STRONG_PASSWORD, create_tenant, login

ACCEPT = "/v1/agents/invitations/accept"


async def create_agent(
    client: httpx.AsyncClient,
    tenant: dict[str, Any],
    *,
    profile_id: str,
    skills: list[tuple[str, int]] = (),  # type: ignore[assignment]
    name: str = "Ana Agent",
) -> dict[str, Any]:
    """An active agent with a password, logged in: returns the agent plus ``headers``."""
    agent = await invite(
        client,
        tenant,
        display_name=name,
        routing_profile_id=profile_id,
        skills=[{"skill_id": s, "proficiency": p} for s, p in skills],
    )
    token = await invitation_token(client, tenant, agent["email"])
    r = await client.post(ACCEPT, json={"token": token, "password": STRONG_PASSWORD})
    assert r.status_code == 200, r.text
    tokens = await login(client, agent["email"])
    agent["headers"] = tokens["headers"]
    agent["access_token"] = tokens["access_token"]
    return agent


async def staffed_tenant(
    client: httpx.AsyncClient,
    *,
    agents: int = 2,
    queue: dict[str, Any] | None = None,
    profile: dict[str, Any] | None = None,
    skills: tuple[str, ...] = ("Billing",),
    agent_skills: list[list[tuple[str, int]]] | None = None,
) -> dict[str, Any]:
    """A tenant with skills, one queue, one routing profile serving it, and agents."""
    t = await create_tenant(client, company_name=f"Routing Co {uuid.uuid4().hex[:6]}")
    h = t["headers"]
    skill_ids = {}
    for name in skills:
        r = await client.post("/v1/skills", json={"name": name}, headers=h)
        assert r.status_code == 201, r.text
        skill_ids[name] = r.json()["id"]
    qbody = {"name": "Support", "channels": ["voice", "chat", "email"]} | (queue or {})
    r = await client.post("/v1/queues", json=qbody, headers=h)
    assert r.status_code == 201, r.text
    q = r.json()
    pbody = {"name": "Omni", "queues": [{"queue_id": q["id"]}]} | (profile or {})
    r = await client.post("/v1/routing-profiles", json=pbody, headers=h)
    assert r.status_code == 201, r.text
    p = r.json()
    staff = []
    for i in range(agents):
        mine = agent_skills[i] if agent_skills else [(skill_ids[skills[0]], 3)]
        staff.append(
            await create_agent(client, t, profile_id=p["id"], skills=mine, name=f"Agent {i}")
        )
    t.update(queue=q, profile=p, skills=skill_ids, agents=staff)
    return t


async def go_available(client: httpx.AsyncClient, agent: dict[str, Any]) -> dict[str, Any]:
    r = await client.put(
        "/v1/agent/presence", json={"status": "available"}, headers=agent["headers"]
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def wait_for(predicate: Any, timeout: float = 5.0, interval: float = 0.02) -> Any:  # noqa: ASYNC109
    """Await ``predicate()`` (async) until truthy; fail after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def running_router(
    db_urls: bootstrap.DatabaseUrls, **overrides: Any
) -> AsyncIterator[Router]:
    config = RouterConfig(
        url=db_urls.router,
        lease_seconds=overrides.pop("lease_seconds", 5.0),
        offer_timeout_seconds=overrides.pop("offer_timeout_seconds", 20.0),
        **overrides,
    )
    router = Router(config)
    task = asyncio.create_task(router.run())
    try:
        await wait_for(lambda: _has_shards(router), timeout=10)
        yield router
    finally:
        router.stop()
        await asyncio.wait_for(task, timeout=10)


async def _has_shards(router: Router) -> bool:
    return bool(router.shards)


@pytest.fixture
async def router(
    db_urls: bootstrap.DatabaseUrls, clean_db: asyncpg.Connection
) -> AsyncIterator[Router]:
    async with running_router(db_urls) as r:
        yield r


# ---------------------------------------------------------------------------- API helpers
# (behaviour tests of the routing engine: matching, reservations, contacts, presence)


async def add_queue(
    client: httpx.AsyncClient, tenant: dict[str, Any], **body: Any
) -> dict[str, Any]:
    """Another queue of the tenant (all channels unless told)."""
    full = {"name": f"Q {uuid.uuid4().hex[:6]}", "channels": ["voice", "chat", "email"]} | body
    r = await client.post("/v1/queues", json=full, headers=tenant["headers"])
    assert r.status_code == 201, r.text
    queue: dict[str, Any] = r.json()
    return queue


async def add_profile(
    client: httpx.AsyncClient, tenant: dict[str, Any], queues: list[dict[str, Any]], **body: Any
) -> dict[str, Any]:
    """A routing profile serving ``queues`` (each {"queue_id", "priority", ...})."""
    full = {"name": f"P {uuid.uuid4().hex[:6]}", "queues": queues} | body
    r = await client.post("/v1/routing-profiles", json=full, headers=tenant["headers"])
    assert r.status_code == 201, r.text
    profile: dict[str, Any] = r.json()
    return profile


async def enqueue(
    client: httpx.AsyncClient, tenant: dict[str, Any], queue_id: str | None = None, **body: Any
) -> dict[str, Any]:
    """POST /v1/contacts (a chat into ``queue_id`` unless told); asserts 201."""
    full = {"channel": "chat"} | ({"queue_id": queue_id} if queue_id else {}) | body
    r = await client.post("/v1/contacts", json=full, headers=tenant["headers"])
    assert r.status_code == 201, r.text
    contact: dict[str, Any] = r.json()
    return contact


async def get_contact(
    client: httpx.AsyncClient, tenant: dict[str, Any], contact_id: str
) -> dict[str, Any]:
    r = await client.get(f"/v1/contacts/{contact_id}", headers=tenant["headers"])
    assert r.status_code == 200, r.text
    contact: dict[str, Any] = r.json()
    return contact


async def live_offers(client: httpx.AsyncClient, agent: dict[str, Any]) -> list[dict[str, Any]]:
    """The agent's pending offers, as their desktop sees them."""
    r = await client.get("/v1/agent/presence", headers=agent["headers"])
    assert r.status_code == 200, r.text
    return [x for x in r.json()["reservations"] if x["state"] == "offered"]


async def wait_offer(
    client: httpx.AsyncClient,
    agent: dict[str, Any],
    contact_id: str | None = None,
    within: float = 10.0,
) -> dict[str, Any]:
    """Wait until the agent holds an offer (of ``contact_id`` when given)."""

    async def found() -> dict[str, Any] | None:
        for offer in await live_offers(client, agent):
            if contact_id is None or offer["contact_id"] == contact_id:
                return offer
        return None

    offer: dict[str, Any] = await wait_for(found, timeout=within)
    return offer


async def trail_kinds(
    client: httpx.AsyncClient, tenant: dict[str, Any], contact_id: str
) -> list[str]:
    r = await client.get(f"/v1/contacts/{contact_id}/routing", headers=tenant["headers"])
    assert r.status_code == 200, r.text
    return [e["kind"] for e in r.json()["trail"]]
