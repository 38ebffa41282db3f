"""After a merge, what agents read about a conversation is the survivor's: its context
(the customer panel) and the absorbed profile's timeline."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx

from tests.conftest import create_tenant
from tests.customers.conftest import create_customer, customer_of, say, timeline, webchat


async def test_a_merged_conversation_shows_the_survivor_to_agents(
    client: httpx.AsyncClient, app: Any, clean_db: asyncpg.Connection
) -> None:
    t = await create_tenant(client)
    h = t["headers"]
    chat = await webchat(client, t)
    received = await say(app, t, chat, "v_merge_context_01", "Hello, where is my parcel?")
    absorbed = await customer_of(clean_db, received)
    survivor = await create_customer(client, t, display_name="Ana Survivor")

    r = await client.post(
        f"/v1/customers/{survivor['id']}/merge", json={"customer_id": str(absorbed)}, headers=h
    )
    assert r.status_code == 200, r.text

    r = await client.get(f"/v1/conversations/{received.conversation_id}/context", headers=h)
    assert r.status_code == 200, r.text
    customer = r.json()["customer"]
    assert (customer["id"], customer["display_name"]) == (survivor["id"], "Ana Survivor")
    assert {i["kind"] for i in customer["identities"]} == {"email", "webchat"}
    # The absorbed profile's timeline is the survivor's, message included.
    merged = await timeline(client, t, str(absorbed))
    assert merged == await timeline(client, t, survivor["id"])
    assert "message.received" in {item["kind"] for item in merged["items"]}
