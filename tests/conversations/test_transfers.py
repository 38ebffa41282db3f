"""Handing conversations over: warm transfer to another queue (the first agent keeps the
customer until the second accepts; then the first is released and both agents' handled
minutes are on the ledger with the conversation), cold transfer to an agent (preferred
and sticky), cancelling a warm transfer, and consulting a colleague."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conversations.desk import (
    conversation,
    customer_writes,
    problem_of,
    take,
    webchat_channel,
    worker,  # noqa: F401 - the fixture
)
from tests.routing.conftest import (
    add_profile,
    add_queue,
    create_agent,
    go_available,
    live_offers,
    staffed_tenant,
    wait_for,
    wait_offer,
)

pytestmark = pytest.mark.usefixtures("worker")


async def two_teams(app: Any, client: httpx.AsyncClient) -> dict[str, Any]:
    """Support (queue 1, agent Ana) and Billing (queue 2, agent Ben); a customer's chat
    is assigned to Ana."""
    t = await staffed_tenant(client, agents=1)
    billing = await add_queue(client, t, name="Billing", wrap_up_codes=["Paid"])
    profile = await add_profile(client, t, [{"queue_id": billing["id"]}])
    ben = await create_agent(client, t, profile_id=profile["id"], name="Ben Billing")
    chat = await webchat_channel(client, t, t["queue"]["id"])
    got = await customer_writes(app, t, chat)
    ana = t["agents"][0]
    await take(client, ana)
    t.update(billing=billing, ben=ben, ana=ana, cid=got.conversation_id, chat=chat)
    return t


async def test_a_warm_transfer_to_another_queue_releases_the_first_agent_on_accept(
    app: Any, client: httpx.AsyncClient, clean_db: asyncpg.Connection
) -> None:
    t = await two_teams(app, client)
    ana, ben, cid = t["ana"], t["ben"], t["cid"]
    r = await client.post(
        f"/v1/conversations/{cid}/transfer",
        json={"queue_id": t["billing"]["id"], "mode": "warm", "note": "Refund of order 4711"},
        headers=ana["headers"],
    )
    assert r.status_code == 200, r.text
    conv = r.json()
    # Ana keeps the customer meanwhile.
    assert (conv["state"], conv["agent_id"]) == ("assigned", ana["id"])
    assert conv["transfer_contact_id"] is not None
    r = await client.post(
        f"/v1/conversations/{cid}/messages", json={"text": "One moment"}, headers=ana["headers"]
    )
    assert r.status_code == 201
    # A second transfer waits for the first to finish; so does resolving.
    r = await client.post(
        f"/v1/conversations/{cid}/transfer",
        json={"queue_id": t["billing"]["id"]},
        headers=ana["headers"],
    )
    assert problem_of(r, 409)["code"] == "transfer-pending"
    r = await client.post(f"/v1/conversations/{cid}/resolve", headers=ana["headers"])
    assert problem_of(r, 409)["code"] == "transfer-pending"

    await go_available(client, ben)
    offer = await wait_offer(client, ben, conv["transfer_contact_id"])
    # Ben sees the note and the conversation so far before accepting.
    r = await client.get(f"/v1/conversations/{cid}/context", headers=ben["headers"])
    assert r.status_code == 200, r.text
    context = r.json()
    assert context["transfer"]["note"] == "Refund of order 4711"
    assert context["transfer"]["from_name"] == "Agent 0"
    assert [m["body"] for m in context["messages"]][-1] == "One moment"

    r = await client.post(f"/v1/reservations/{offer['id']}/accept", headers=ben["headers"])
    assert r.status_code == 200, r.text
    conv = await conversation(client, ben, cid)
    assert (conv["state"], conv["agent_id"], conv["transfer_contact_id"]) == (
        "assigned",
        ben["id"],
        None,
    )
    assert conv["queue_id"] == t["billing"]["id"]
    parts = {(p["name"], p["role"]): p["state"] for p in conv["participants"]}
    assert parts[("Agent 0", "owner")] == "left"
    assert parts[("Ben Billing", "owner")] == "active"
    # Ana's work ended at Ben's accept: wrap-up (the queue's timer), minutes on the ledger.
    ana_work = await clean_db.fetchrow(
        "SELECT state FROM reservations WHERE agent_id = $1", uuid.UUID(ana["id"])
    )
    assert ana_work["state"] == "wrap_up"
    r = await client.post(
        f"/v1/conversations/{cid}/messages", json={"text": "still me"}, headers=ana["headers"]
    )
    assert problem_of(r, 403)["code"] == "not-a-participant"
    topics = await clean_db.fetch(
        "SELECT topic, audience, payload FROM conversation_events WHERE conversation_id = $1 "
        "AND topic IN ('transfer.requested', 'transfer.completed', 'agent.joined') ORDER BY id",
        cid,
    )
    assert [(e["topic"], e["audience"]) for e in topics] == [
        ("agent.joined", "all"),
        ("transfer.requested", "agents"),
        ("agent.joined", "all"),
        ("transfer.completed", "all"),
    ]
    assert json.loads(topics[-1]["payload"])["to"] == "Ben Billing"

    r = await client.post(
        f"/v1/conversations/{cid}/resolve", json={"wrap_up_code": "paid"}, headers=ben["headers"]
    )
    assert r.status_code == 200, r.text
    assert r.json()["wrap_up_code"] == "Paid"
    handled = await clean_db.fetch(
        "SELECT attributes FROM usage_events WHERE meter = 'handled_minutes.chat' "
        "ORDER BY recorded_at"
    )
    assert len(handled) == 2
    for row in handled:
        assert json.loads(row["attributes"])["conversation_id"] == str(cid)
    queues = [json.loads(h["attributes"])["queue_id"] for h in handled]
    assert queues == [t["queue"]["id"], t["billing"]["id"]]


async def test_a_cold_transfer_to_an_agent_prefers_them_and_ends_the_first_work_now(
    app: Any, client: httpx.AsyncClient, clean_db: asyncpg.Connection
) -> None:
    t = await staffed_tenant(client, agents=2, queue={"sticky_timeout_seconds": 60})
    chat = await webchat_channel(client, t, t["queue"]["id"])
    got = await customer_writes(app, t, chat)
    ana, bo = t["agents"]
    await take(client, ana)
    await go_available(client, bo)
    cid = got.conversation_id
    r = await client.post(
        f"/v1/conversations/{cid}/transfer",
        json={"agent_id": bo["id"], "mode": "cold"},
        headers=ana["headers"],
    )
    assert r.status_code == 200, r.text
    conv = r.json()
    assert conv["state"] == "queued"
    assert all(p["state"] == "left" for p in conv["participants"] if p["kind"] == "agent")
    contact = await clean_db.fetchrow(
        "SELECT preferred_agent_ids, sticky_agent_id, attributes FROM contacts WHERE id = $1",
        uuid.UUID(conv["contact_id"]),
    )
    assert contact["preferred_agent_ids"] == [uuid.UUID(bo["id"])]
    assert contact["sticky_agent_id"] == uuid.UUID(bo["id"])
    assert json.loads(contact["attributes"])["transfer"]["mode"] == "cold"
    # Ana's work is over at once (handled minutes with the conversation).
    state = await clean_db.fetchval(
        "SELECT state FROM reservations WHERE agent_id = $1", uuid.UUID(ana["id"])
    )
    assert state == "wrap_up"
    handled = await clean_db.fetchval(
        "SELECT attributes FROM usage_events WHERE meter = 'handled_minutes.chat'"
    )
    assert json.loads(handled)["conversation_id"] == str(cid)
    # Ana still has room for a chat, yet the offer goes to Bo.
    offer = await wait_offer(client, bo, conv["contact_id"])
    assert await live_offers(client, ana) == []
    r = await client.post(f"/v1/reservations/{offer['id']}/accept", headers=bo["headers"])
    assert r.status_code == 200, r.text
    conv = await conversation(client, bo, cid)
    assert (conv["state"], conv["agent_id"]) == ("assigned", bo["id"])
    trail = await clean_db.fetch(
        "SELECT kind FROM routing_events WHERE contact_id = $1 ORDER BY at, kind",
        uuid.UUID(conv["contact_id"]),
    )
    assert "transfer" in [e["kind"] for e in trail]


async def test_a_warm_transfer_can_be_cancelled_before_anyone_accepts(
    app: Any, client: httpx.AsyncClient, clean_db: asyncpg.Connection
) -> None:
    t = await two_teams(app, client)
    ana, cid = t["ana"], t["cid"]
    r = await client.post(
        f"/v1/conversations/{cid}/transfer",
        json={"queue_id": t["billing"]["id"], "mode": "warm"},
        headers=ana["headers"],
    )
    pending_contact = r.json()["transfer_contact_id"]
    # The tenant's owner (here its API key) may withdraw it for the agent.
    r = await client.delete(f"/v1/conversations/{cid}/transfer", headers=t["headers"])
    assert r.status_code == 200, r.text
    assert r.json()["transfer_contact_id"] is None and r.json()["agent_id"] == ana["id"]
    state = await clean_db.fetchval(
        "SELECT state FROM contacts WHERE id = $1", uuid.UUID(pending_contact)
    )
    assert state == "abandoned"
    r = await client.delete(f"/v1/conversations/{cid}/transfer", headers=ana["headers"])
    assert problem_of(r, 409)["code"] == "no-transfer-pending"
    # Ana can now resolve.
    r = await client.post(f"/v1/conversations/{cid}/resolve", headers=ana["headers"])
    assert r.status_code == 200, r.text


async def test_a_consulted_agent_reads_and_writes_notes_never_to_the_customer(
    app: Any, client: httpx.AsyncClient, clean_db: asyncpg.Connection
) -> None:
    t = await two_teams(app, client)
    ana, ben, cid = t["ana"], t["ben"], t["cid"]
    r = await client.post(
        f"/v1/conversations/{cid}/consult",
        json={"agent_id": ben["id"], "note": "Is this refundable?"},
        headers=ana["headers"],
    )
    assert r.status_code == 200, r.text
    invited = [p for p in r.json()["participants"] if p["role"] == "consult"]
    assert [(p["agent_id"], p["state"]) for p in invited] == [(ben["id"], "invited")]

    async def invitation() -> asyncpg.Record | None:
        row: asyncpg.Record | None = await clean_db.fetchrow(
            "SELECT payload FROM outbox_events WHERE agent_id = $1 "
            "AND topic = 'conversation.consult.invited'",
            uuid.UUID(ben["id"]),
        )
        return row

    row = await wait_for(invitation)
    assert json.loads(row["payload"])["note"] == "Is this refundable?"
    r = await client.post(
        f"/v1/conversations/{cid}/consult",
        json={"agent_id": ben["id"]},
        headers=ana["headers"],
    )
    assert problem_of(r, 409)["code"] == "already-participant"

    # Invited: reads already, writes once accepted.
    r = await client.get(f"/v1/conversations/{cid}/messages", headers=ben["headers"])
    assert r.status_code == 200
    r = await client.post(
        f"/v1/conversations/{cid}/notes", json={"text": "Yes"}, headers=ben["headers"]
    )
    assert problem_of(r, 403)["code"] == "consult-not-accepted"
    r = await client.post(f"/v1/conversations/{cid}/consult/accept", headers=ben["headers"])
    assert r.status_code == 200, r.text
    r = await client.post(
        f"/v1/conversations/{cid}/notes",
        json={"text": "Yes, within 30 days"},
        headers=ben["headers"],
    )
    assert r.status_code == 201, r.text
    for path, body in (
        ("/messages", {"text": "Hello, Ben here"}),
        ("/transfer", {"queue_id": t["billing"]["id"]}),
        ("/resolve", {}),
    ):
        r = await client.post(f"/v1/conversations/{cid}{path}", json=body, headers=ben["headers"])
        assert problem_of(r, 403)["code"] == "not-the-owner", path
    r = await client.post(
        f"/v1/conversations/{cid}/typing", json={"typing": True}, headers=ben["headers"]
    )
    assert r.json() == {"sent": True}
    typing = await clean_db.fetchval(
        "SELECT audience FROM conversation_events WHERE conversation_id = $1 AND topic = 'typing'",
        cid,
    )
    assert typing == "agents"  # a consultant's typing is not shown to the customer
    r = await client.post(f"/v1/conversations/{cid}/consult/leave", headers=ben["headers"])
    assert r.status_code == 200
    r = await client.post(
        f"/v1/conversations/{cid}/notes", json={"text": "bye"}, headers=ben["headers"]
    )
    assert problem_of(r, 403)["code"] == "not-a-participant"
    outbound = await clean_db.fetchval(
        "SELECT count(*) FROM messages WHERE conversation_id = $1 AND direction = 'outbound'",
        cid,
    )
    assert outbound == 0
