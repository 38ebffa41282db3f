"""The visitor closes the chat: a waiting chat leaves the line (abandoned, its wait kept)
and is resolved; an agent holding it is told the customer left."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx

from tests.routing.conftest import go_available, running_router, wait_offer
from tests.webchat.conftest import open_session, start_chat


async def test_a_waiting_chat_that_the_visitor_closes_is_abandoned(
    client: httpx.AsyncClient, clean_db: asyncpg.Connection, widget: dict[str, Any]
) -> None:
    visitor = await open_session(client, widget)
    cid = (await start_chat(client, visitor))["conversation"]["id"]
    r = await client.post(f"/v1/widget/conversations/{cid}/end", headers=visitor["headers"])
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "resolved" and r.json()["position"] is None
    contact = await clean_db.fetchrow(
        "SELECT state, wait_seconds FROM contacts WHERE conversation_id = $1::uuid", cid
    )
    assert contact["state"] == "abandoned" and contact["wait_seconds"] is not None
    kinds = [
        r["kind"]
        for r in await clean_db.fetch(
            "SELECT kind FROM timeline_events WHERE conversation_id = $1::uuid ORDER BY at, id",
            cid,
        )
    ]
    assert kinds[-1] == "conversation.abandoned"
    # Closing again changes nothing.
    again = await client.post(f"/v1/widget/conversations/{cid}/end", headers=visitor["headers"])
    assert again.status_code == 200 and again.json()["state"] == "resolved"
    ended = await clean_db.fetchval(
        "SELECT count(*) FROM conversation_events WHERE topic = 'conversation.ended'"
    )
    assert ended == 1


async def test_the_agent_is_told_when_the_customer_leaves(
    client: httpx.AsyncClient,
    clean_db: asyncpg.Connection,
    db_urls: Any,
    widget: dict[str, Any],
) -> None:
    visitor = await open_session(client, widget)
    cid = (await start_chat(client, visitor))["conversation"]["id"]
    agent = widget["agents"][0]
    async with running_router(db_urls):
        await go_available(client, agent)
        offer = await wait_offer(client, agent)
        r = await client.post(f"/v1/reservations/{offer['id']}/accept", headers=agent["headers"])
        assert r.status_code == 200, r.text
    r = await client.post(f"/v1/widget/conversations/{cid}/end", headers=visitor["headers"])
    assert r.status_code == 200 and r.json()["state"] == "assigned", r.text
    told = await clean_db.fetchval(
        "SELECT count(*) FROM outbox_events WHERE agent_id = $1::uuid "
        "AND topic = 'conversation.customer.left'",
        agent["id"],
    )
    assert told == 1
    # Another visitor cannot close it.
    stranger = await open_session(client, widget)
    r = await client.post(f"/v1/widget/conversations/{cid}/end", headers=stranger["headers"])
    assert r.status_code == 404
