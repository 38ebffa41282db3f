"""Merging two profiles of one person moves everything to the survivor in one go;
splitting the identities off again takes back what came through them."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx

from tests.conftest import create_tenant
from tests.customers.conftest import (
    create_customer,
    customer_of,
    get_customer,
    page_view,
    proactive_decision,
    problem,
    say,
    timeline,
    webchat,
)
from tests.routing.conftest import staffed_tenant

ANA_VISITOR = "v_ana_laptop_01"
PHONE_VISITOR = "v_ana_phone_001"
ANA_PHONE = "+34612000111"


async def _two_profiles_of_ana(
    client: httpx.AsyncClient, app: Any, conn: asyncpg.Connection
) -> dict[str, Any]:
    """Ana chats from her laptop (profile A) and from her phone (profile B, which also
    has her phone number, a page view, a proactive decision and a voice callback)."""
    t = await staffed_tenant(client, agents=0)
    h = t["headers"]
    chat = await webchat(client, t)
    on_laptop = await say(app, t, chat, ANA_VISITOR, "Hello from my laptop")
    a = await customer_of(conn, on_laptop)
    on_phone = await say(app, t, chat, PHONE_VISITOR, "Hi, it's me on my phone")
    b = await customer_of(conn, on_phone)
    assert a != b
    await say(app, t, chat, PHONE_VISITOR, "Still there?")
    r = await client.patch(
        f"/v1/customers/{a}",
        json={"display_name": "Ana", "attributes": {"tier": "gold", "laptop": True}},
        headers=h,
    )
    assert r.status_code == 200, r.text
    r = await client.patch(
        f"/v1/customers/{b}",
        json={"attributes": {"tier": "silver", "phone_os": "android"}, "timezone": "Europe/Madrid"},
        headers=h,
    )
    assert r.status_code == 200, r.text
    r = await client.post(
        f"/v1/customers/{b}/identities", json={"kind": "phone", "value": ANA_PHONE}, headers=h
    )
    assert r.status_code == 201, r.text
    # Consent: A granted sms first, B revoked it later (the most recent wins).
    for who, channel, status in (
        (a, "sms", "granted"),
        (b, "sms", "revoked"),
        (b, "email", "granted"),
    ):
        r = await client.put(
            f"/v1/customers/{who}/consents/{channel}", json={"status": status}, headers=h
        )
        assert r.status_code == 200, r.text
    b_identity = await conn.fetchval(
        "SELECT id FROM customer_identities WHERE value = $1", PHONE_VISITOR
    )
    await page_view(conn, t, b, b_identity, chat, "https://shop.example.com/cart")
    await proactive_decision(conn, t, b)
    r = await client.post(
        "/v1/contacts",
        json={"channel": "voice", "queue_id": t["queue"]["id"], "customer_ref": str(b)},
        headers=h,
    )
    assert r.status_code == 201, r.text
    call = r.json()
    r = await client.post(
        f"/v1/contacts/{call['id']}/callback", json={"number": ANA_PHONE}, headers=h
    )
    assert r.status_code == 200, r.text
    return {
        "tenant": t,
        "chat": chat,
        "a": a,
        "b": b,
        "laptop": on_laptop,
        "phone": on_phone,
        "call": call,
    }


async def _count(conn: asyncpg.Connection, table: str, customer: uuid.UUID) -> int:
    n = await conn.fetchval(f"SELECT count(*) FROM {table} WHERE customer_id = $1", customer)
    assert isinstance(n, int)
    return n


async def test_merge_moves_everything_to_the_survivor(
    client: httpx.AsyncClient, app: Any, clean_db: asyncpg.Connection
) -> None:
    s = await _two_profiles_of_ana(client, app, clean_db)
    t, a, b = s["tenant"], s["a"], s["b"]
    h = t["headers"]
    before_b = {
        table: await _count(clean_db, table, b)
        for table in ("messages", "timeline_events", "page_views", "proactive_decisions")
    }
    b_identities = [i["id"] for i in (await get_customer(client, t, str(b)))["identities"]]

    r = await client.post(f"/v1/customers/{a}/merge", json={"customer_id": str(b)}, headers=h)
    assert r.status_code == 200, r.text
    result = r.json()
    moved = result["moved"]
    assert sorted(moved["identity_ids"]) == sorted(b_identities)
    assert moved["conversations"] == 1 and moved["contacts"] == 1
    assert moved["messages"] == before_b["messages"] == 2
    assert moved["timeline_events"] == before_b["timeline_events"]
    assert (moved["page_views"], moved["proactive_decisions"]) == (1, 1)
    assert sorted(moved["consents"]) == ["email", "sms"]
    assert (moved["attributes"], moved["attributes_dropped"]) == (["phone_os"], [])

    ana = result["customer"]
    assert r.headers["etag"] == f'"{ana["version"]}"'
    assert ana["id"] == str(a) and ana["display_name"] == "Ana"
    assert ana["attributes"] == {"tier": "gold", "laptop": True, "phone_os": "android"}
    assert ana["timezone"] == "Europe/Madrid"  # A had none
    assert len(ana["identities"]) == 3
    assert {(c["channel"], c["status"]) for c in ana["consents"]} == {
        ("sms", "revoked"),
        ("email", "granted"),
    }
    # Everything of B's is A's now; B stays, pointing at A.
    for table in ("messages", "timeline_events", "page_views", "proactive_decisions"):
        assert await _count(clean_db, table, b) == 0, table
    assert await _count(clean_db, "conversations", a) == 2
    contact_ref = await clean_db.fetchval(
        "SELECT customer_ref FROM contacts WHERE id = $1", uuid.UUID(s["call"]["id"])
    )
    assert contact_ref == str(a)  # sticky routing and the call history follow
    gone = await get_customer(client, t, str(b))
    assert (gone["merged_into_id"], gone["identities"], gone["consents"]) == (str(a), [], [])
    # The absorbed profile's timeline is the survivor's.
    assert await timeline(client, t, str(b)) == await timeline(client, t, str(a))

    # A new message through B's visitor id continues on A.
    again = await say(app, t, s["chat"], PHONE_VISITOR, "Back again")
    assert again.conversation_id == s["phone"].conversation_id
    assert await customer_of(clean_db, again) == a

    # The record on both profiles, and the audit trail.
    changes = await clean_db.fetch(
        "SELECT customer_id, kind, other_customer_id, detail FROM customer_changes "
        "WHERE kind IN ('merged', 'absorbed') ORDER BY kind"
    )
    assert [(c["customer_id"], c["kind"], c["other_customer_id"]) for c in changes] == [
        (b, "absorbed", a),
        (a, "merged", b),
    ]
    audit = await clean_db.fetchrow(
        "SELECT target_id, details FROM audit_events WHERE action = 'customer.merge'"
    )
    assert audit["target_id"] == str(a)

    # Refusals: into itself, a merged profile either way, writes to a merged profile.
    r = await client.post(f"/v1/customers/{a}/merge", json={"customer_id": str(a)}, headers=h)
    assert problem(r, 422, "merge-into-self")["field"] == "body.customer_id"
    r = await client.post(f"/v1/customers/{a}/merge", json={"customer_id": str(b)}, headers=h)
    p = problem(r, 409, "customer-merged")
    assert (p["field"], p["merged_into_id"]) == ("body.customer_id", str(a))
    r = await client.post(f"/v1/customers/{b}/merge", json={"customer_id": str(a)}, headers=h)
    assert problem(r, 409, "customer-merged")["field"] == "path.customer_id"
    r = await client.patch(f"/v1/customers/{b}", json={"language": "es"}, headers=h)
    problem(r, 409, "customer-merged")
    r = await client.put(f"/v1/customers/{b}/consents/sms", json={"status": "granted"}, headers=h)
    problem(r, 409, "customer-merged")
    # Merged profiles are not listed; their identities find the survivor.
    r = await client.get("/v1/customers", params={"identity": f"phone:{ANA_PHONE}"}, headers=h)
    assert [c["id"] for c in r.json()["items"]] == [str(a)]
    r = await client.get("/v1/customers", headers=h)
    assert str(b) not in [c["id"] for c in r.json()["items"]]


async def test_a_chain_of_merges_points_every_absorbed_profile_at_the_last_survivor(
    client: httpx.AsyncClient,
) -> None:
    t = await create_tenant(client)
    h = t["headers"]
    x, y, z = [await create_customer(client, t) for _ in range(3)]
    r = await client.post(
        f"/v1/customers/{y['id']}/merge", json={"customer_id": x["id"]}, headers=h
    )
    assert r.status_code == 200, r.text
    r = await client.post(
        f"/v1/customers/{z['id']}/merge", json={"customer_id": y["id"]}, headers=h
    )
    assert r.status_code == 200, r.text
    assert (await get_customer(client, t, x["id"]))["merged_into_id"] == z["id"]
    assert (await get_customer(client, t, y["id"]))["merged_into_id"] == z["id"]
    assert len((await get_customer(client, t, z["id"]))["identities"]) == 3
    items = (await timeline(client, t, x["id"], kinds="customer.merged"))["items"]
    assert [i["summary"]["absorbed_customer_id"] for i in items] == [x["id"], y["id"]]


async def test_split_after_a_merge_takes_back_what_came_through_the_identities(
    client: httpx.AsyncClient, app: Any, clean_db: asyncpg.Connection
) -> None:
    s = await _two_profiles_of_ana(client, app, clean_db)
    t, a, b = s["tenant"], s["a"], s["b"]
    h = t["headers"]
    # What came through B's identities: not B's consent changes (consent stays, as it
    # is the person's word, not the device's).
    b_timeline = await clean_db.fetchval(
        "SELECT count(*) FROM timeline_events WHERE customer_id = $1 "
        "AND (identity_id IS NOT NULL OR conversation_id IS NOT NULL)",
        b,
    )
    assert b_timeline == 4  # customer.created, conversation.opened, two messages
    r = await client.post(f"/v1/customers/{a}/merge", json={"customer_id": str(b)}, headers=h)
    assert r.status_code == 200, r.text
    # The merge record names the identities that came from B: undo by splitting them off.
    r = await client.get(f"/v1/customers/{a}/changes", headers=h)
    merged = next(c for c in r.json()["items"] if c["kind"] == "merged")
    assert merged["other_customer_id"] == str(b)
    came = merged["detail"]["identity_ids"]

    r = await client.post(
        f"/v1/customers/{a}/split",
        json={"identity_ids": came, "display_name": "Ana (phone)"},
        headers=h,
    )
    assert r.status_code == 201, r.text
    result = r.json()
    c = uuid.UUID(result["customer"]["id"])
    assert r.headers["location"] == f"/v1/customers/{c}"
    assert result["from_customer_id"] == str(a)
    assert result["customer"]["display_name"] == "Ana (phone)"
    assert sorted(i["id"] for i in result["customer"]["identities"]) == sorted(came)
    moved = result["moved"]
    assert (moved["conversations"], moved["messages"], moved["page_views"]) == (1, 2, 1)
    assert moved["contacts"] == 1  # the callback to the phone number that moved
    # B's interactions came back (the customer.merged event stays with A), plus the split.
    assert moved["timeline_events"] == b_timeline
    assert await _count(clean_db, "timeline_events", c) == b_timeline + 1
    assert await customer_of(clean_db, s["phone"]) == c
    assert await customer_of(clean_db, s["laptop"]) == a
    assert await _count(clean_db, "messages", c) == 2
    assert await _count(clean_db, "page_views", c) == 1
    ref = await clean_db.fetchval(
        "SELECT customer_ref FROM contacts WHERE id = $1", uuid.UUID(s["call"]["id"])
    )
    assert ref == str(c)
    ana = await get_customer(client, t, str(a))
    assert [i["value"] for i in ana["identities"]] == [ANA_VISITOR]
    kinds = {
        (x["customer_id"], x["kind"])
        for x in await clean_db.fetch(
            "SELECT customer_id, kind FROM customer_changes WHERE kind LIKE 'split%'"
        )
    }
    assert kinds == {(a, "split"), (c, "split_from")}
    assert (
        await clean_db.fetchval("SELECT count(*) FROM audit_events WHERE action = 'customer.split'")
        == 1
    )
    # The phone visitor's next message lands on the new profile.
    again = await say(app, t, s["chat"], PHONE_VISITOR, "It's Ana's brother, actually")
    assert await customer_of(clean_db, again) == c

    # Refusals: every identity, an identity of another profile, twice the same one.
    last = ana["identities"][0]["id"]
    r = await client.post(f"/v1/customers/{a}/split", json={"identity_ids": [last]}, headers=h)
    assert problem(r, 422, "split-takes-all")["field"] == "body.identity_ids"
    r = await client.post(f"/v1/customers/{a}/split", json={"identity_ids": came[:1]}, headers=h)
    assert problem(r, 422, "identity-not-on-customer")["field"] == "body.identity_ids.0"
    r = await client.post(
        f"/v1/customers/{c}/split", json={"identity_ids": [came[0], came[0]]}, headers=h
    )
    assert problem(r, 422)["field"] == "body.identity_ids.1"
    r = await client.post(f"/v1/customers/{b}/split", json={"identity_ids": came[:1]}, headers=h)
    problem(r, 409, "customer-merged")


async def test_a_merge_replayed_with_its_idempotency_key_answers_the_same(
    client: httpx.AsyncClient,
) -> None:
    t = await create_tenant(client)
    x = await create_customer(client, t)
    y = await create_customer(client, t)
    h = t["headers"] | {"Idempotency-Key": "merge-x-y"}
    url = f"/v1/customers/{x['id']}/merge"
    first = await client.post(url, json={"customer_id": y["id"]}, headers=h)
    again = await client.post(url, json={"customer_id": y["id"]}, headers=h)
    assert first.status_code == again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()


async def test_two_merges_of_one_pair_in_opposite_directions_do_not_deadlock(
    client: httpx.AsyncClient,
) -> None:
    t = await create_tenant(client)
    h = t["headers"]
    x = await create_customer(client, t)
    y = await create_customer(client, t)
    answers = await asyncio.gather(
        client.post(f"/v1/customers/{x['id']}/merge", json={"customer_id": y["id"]}, headers=h),
        client.post(f"/v1/customers/{y['id']}/merge", json={"customer_id": x["id"]}, headers=h),
    )
    # Both lock the pair in id order: one merges, the other then finds a merged profile.
    assert sorted(r.status_code for r in answers) == [200, 409], [r.text for r in answers]
    survivor = next(r.json()["customer"] for r in answers if r.status_code == 200)
    assert len(survivor["identities"]) == 2
    loser = next(r.json() for r in answers if r.status_code == 409)
    assert (loser["code"], loser["merged_into_id"]) == ("customer-merged", survivor["id"])
