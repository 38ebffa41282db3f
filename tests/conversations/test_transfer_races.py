"""Transfers racing other writers of the same conversation, as real concurrent requests
(each on its own HTTP client, request transaction and PostgreSQL connection), repeated
so that both orderings occur. Whichever commits first wins; the loser gets a clear
answer (409/403 problem+json) and changes nothing. After every round the conversation,
its participants, its routing contacts, the agents' capacity, its event log and the
handled-minutes ledger must tell one consistent story, whoever won.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest

from tests.conversations.desk import (
    customer_writes,
    webchat_channel,
    worker,  # noqa: F401 - the fixture
)
from tests.routing.conftest import (
    add_profile,
    add_queue,
    create_agent,
    go_available,
    staffed_tenant,
    wait_for,
    wait_offer,
)

pytestmark = pytest.mark.usefixtures("worker")

ROUNDS = 20
LIVE = ("queued", "offered", "in_progress", "wrap_up")

A = TypeVar("A")
B = TypeVar("B")


# ---------------------------------------------------------------------------- harness


@contextlib.asynccontextmanager
async def racers(app: Any, n: int = 2) -> AsyncIterator[list[httpx.AsyncClient]]:
    """``n`` independent HTTP clients on the app (each request: its own transaction and
    pooled connection). An unhandled error (a deadlock, say) raises out of the request
    here instead of hiding in a 500."""
    async with contextlib.AsyncExitStack() as stack:
        clients = []
        for i in range(n):
            transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50001 + i))
            clients.append(
                await stack.enter_async_context(
                    httpx.AsyncClient(transport=transport, base_url="http://testserver")
                )
            )
        yield clients


async def _after(delay: float, request: Awaitable[A]) -> A:
    await asyncio.sleep(delay)
    return await request


async def race(i: int, one: Awaitable[A], two: Awaitable[B]) -> tuple[A, B]:
    """Run both at once. Rounds alternate which one starts and hold the other back by
    0 to 16 ms, so that across the rounds each wins some (the outcome is never assumed)."""
    delay = (i // 2 % 5) * 0.004
    if i % 2:
        b, a = await asyncio.gather(two, _after(delay, one))
    else:
        a, b = await asyncio.gather(one, _after(delay, two))
    return a, b


def refused(r: httpx.Response, allowed: dict[int, set[str]]) -> str:
    """The loser's answer: a problem+json with one of the ``allowed`` status/codes."""
    assert r.status_code in allowed, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    code: str = r.json()["code"]
    assert code in allowed[r.status_code], r.text
    return code


async def two_teams(app: Any, client: httpx.AsyncClient) -> dict[str, Any]:
    """Support (Ana) and Billing (Ben), both without wrap-up time so that each round
    leaves both agents with all their capacity; a web chat routed to Support."""
    t = await staffed_tenant(client, agents=1, queue={"wrap_up_seconds": 0})
    billing = await add_queue(client, t, name="Billing", wrap_up_seconds=0)
    profile = await add_profile(client, t, [{"queue_id": billing["id"]}])
    ben = await create_agent(client, t, profile_id=profile["id"], name="Ben Billing")
    chat = await webchat_channel(client, t, t["queue"]["id"])
    ana = t["agents"][0]
    await go_available(client, ana)
    await go_available(client, ben)
    t.update(billing=billing, ben=ben, ana=ana, chat=chat)
    return t


async def assigned_to_ana(
    app: Any,
    client: httpx.AsyncClient,
    db: asyncpg.Connection,
    t: dict[str, Any],
    i: int,
    visitor: str | None = None,
) -> tuple[uuid.UUID, uuid.UUID]:
    """A new customer's chat, accepted by Ana: (conversation id, Ana's reservation id)."""
    visitor = visitor or f"v_race_{uuid.uuid4().hex}"
    got = await customer_writes(
        app, t, t["chat"], f"Round {i}: my parcel never came", visitor=visitor
    )
    cid = got.conversation_id
    contact = await db.fetchval("SELECT contact_id FROM conversations WHERE id = $1", cid)
    offer = await wait_offer(client, t["ana"], str(contact))
    r = await client.post(f"/v1/reservations/{offer['id']}/accept", headers=t["ana"]["headers"])
    assert r.status_code == 200, r.text
    return cid, uuid.UUID(offer["id"])


async def warm_offer_to_ben(
    client: httpx.AsyncClient, t: dict[str, Any], cid: uuid.UUID
) -> dict[str, Any]:
    """Ana transfers warm to Billing; Ben holds the offer of the transfer contact."""
    r = await client.post(
        f"/v1/conversations/{cid}/transfer",
        json={"queue_id": t["billing"]["id"], "mode": "warm", "note": "Refund please"},
        headers=t["ana"]["headers"],
    )
    assert r.status_code == 200, r.text
    return await wait_offer(client, t["ben"], r.json()["transfer_contact_id"])


# ---------------------------------------------------------------------------- invariants


async def topics(db: asyncpg.Connection, cid: uuid.UUID) -> Counter[str]:
    rows = await db.fetch("SELECT topic FROM conversation_events WHERE conversation_id = $1", cid)
    return Counter(r["topic"] for r in rows)


async def handled_keys(db: asyncpg.Connection, cid: uuid.UUID) -> list[str]:
    """The handled-minutes ledger rows of the conversation (one per reservation)."""
    rows = await db.fetch(
        "SELECT idempotency_key FROM usage_events WHERE meter = 'handled_minutes.chat' "
        "AND attributes->>'conversation_id' = $1 ORDER BY idempotency_key",
        str(cid),
    )
    return [r["idempotency_key"] for r in rows]


def handled(*reservations: uuid.UUID | str) -> list[str]:
    return sorted(f"reservation:{r}:handled" for r in reservations)


async def live_people(db: asyncpg.Connection, cid: uuid.UUID) -> list[tuple[str, uuid.UUID]]:
    rows = await db.fetch(
        "SELECT role, agent_id FROM conversation_participants WHERE conversation_id = $1 "
        "AND kind = 'agent' AND state <> 'left' ORDER BY role, agent_id",
        cid,
    )
    return [(r["role"], r["agent_id"]) for r in rows]


async def state_of(db: asyncpg.Connection, table: str, row_id: uuid.UUID | str) -> str:
    state: str = await db.fetchval(
        f"SELECT state FROM {table} WHERE id = $1",  # our table names
        uuid.UUID(str(row_id)),
    )
    return state


async def used_points(db: asyncpg.Connection, agent: dict[str, Any]) -> int:
    points: int = await db.fetchval(
        "SELECT used_points FROM agent_presence WHERE agent_id = $1", uuid.UUID(agent["id"])
    )
    return points


async def points_of(db: asyncpg.Connection, reservation_id: uuid.UUID | str) -> int:
    points: int = await db.fetchval(
        "SELECT points FROM reservations WHERE id = $1", uuid.UUID(str(reservation_id))
    )
    return points


async def live_contacts(db: asyncpg.Connection, cid: uuid.UUID) -> list[asyncpg.Record]:
    rows = await db.fetch(
        "SELECT id, queue_id, state FROM contacts WHERE conversation_id = $1 "
        "AND state = ANY($2::text[])",
        cid,
        list(LIVE),
    )
    return list(rows)


async def warm_transfer_settled(
    db: asyncpg.Connection,
    t: dict[str, Any],
    cid: uuid.UUID,
    ana_work: uuid.UUID,
    offer: dict[str, Any],
) -> str:
    """Exactly one outcome of a warm transfer, consistent everywhere: ``accepted`` (Ben
    owns it, Ana's work ended once) or ``cancelled`` (Ana still owns it, the offer is
    gone). Returns which."""
    ana, ben = uuid.UUID(t["ana"]["id"]), uuid.UUID(t["ben"]["id"])
    conv = await db.fetchrow(
        "SELECT state, agent_id, contact_id, queue_id, transfer_contact_id "
        "FROM conversations WHERE id = $1",
        cid,
    )
    # One owner, never two, never none; no transfer left waiting either way.
    assert conv["state"] == "assigned"
    assert conv["transfer_contact_id"] is None
    assert conv["agent_id"] in (ana, ben)
    assert await live_people(db, cid) == [("owner", conv["agent_id"])]
    events = await topics(db, cid)
    assert events["transfer.requested"] == 1
    transfer_contact = uuid.UUID(offer["contact_id"])
    offer_points = await points_of(db, offer["id"])
    ana_points = await points_of(db, ana_work)
    # One live routing contact: the one the owner works on.
    assert [(c["id"], c["state"]) for c in await live_contacts(db, cid)] == [
        (conv["contact_id"], "in_progress")
    ]
    if conv["agent_id"] == ben:
        assert conv["contact_id"] == transfer_contact
        assert str(conv["queue_id"]) == t["billing"]["id"]
        assert (events["transfer.completed"], events["transfer.cancelled"]) == (1, 0)
        assert (events["agent.joined"], events["agent.left"]) == (2, 1)
        assert await state_of(db, "reservations", offer["id"]) == "in_progress"
        assert await state_of(db, "reservations", ana_work) == "completed"
        # Ana's handled minutes ended at Ben's accept, once.
        assert await handled_keys(db, cid) == handled(ana_work)
        assert await used_points(db, t["ben"]) == offer_points
        assert await used_points(db, t["ana"]) == 0
        return "accepted"
    assert str(conv["queue_id"]) == t["queue"]["id"]
    assert (events["transfer.completed"], events["transfer.cancelled"]) == (0, 1)
    assert (events["agent.joined"], events["agent.left"]) == (1, 0)
    assert await state_of(db, "contacts", transfer_contact) == "abandoned"
    assert await state_of(db, "reservations", offer["id"]) == "rescinded"
    assert await state_of(db, "reservations", ana_work) == "in_progress"
    assert await handled_keys(db, cid) == []
    # Ben's points for the withdrawn offer came back, once.
    assert await used_points(db, t["ben"]) == 0
    assert await used_points(db, t["ana"]) == ana_points
    return "cancelled"


async def owner_resolves(
    client: httpx.AsyncClient, db: asyncpg.Connection, t: dict[str, Any], cid: uuid.UUID
) -> None:
    """End of a round: the owner resolves; both agents have all their capacity back."""
    owner = await db.fetchval("SELECT agent_id FROM conversations WHERE id = $1", cid)
    who = t["ben"] if str(owner) == t["ben"]["id"] else t["ana"]
    r = await client.post(f"/v1/conversations/{cid}/resolve", headers=who["headers"])
    assert r.status_code == 200, r.text
    assert (await used_points(db, t["ana"]), await used_points(db, t["ben"])) == (0, 0)


# ---------------------------------------------------------------------------- races


async def test_cancelling_a_warm_transfer_while_the_target_accepts_has_one_outcome(
    app: Any, client: httpx.AsyncClient, clean_db: asyncpg.Connection
) -> None:
    t = await two_teams(app, client)
    ana, ben = t["ana"], t["ben"]
    outcomes: Counter[str] = Counter()
    async with racers(app) as (first, second):
        for i in range(ROUNDS):
            cid, ana_work = await assigned_to_ana(app, client, clean_db, t, i)
            offer = await warm_offer_to_ben(client, t, cid)
            cancel, accept = await race(
                i,
                first.delete(f"/v1/conversations/{cid}/transfer", headers=ana["headers"]),
                second.post(f"/v1/reservations/{offer['id']}/accept", headers=ben["headers"]),
            )
            outcome = await warm_transfer_settled(clean_db, t, cid, ana_work, offer)
            outcomes[outcome] += 1
            if outcome == "accepted":
                assert accept.status_code == 200, accept.text
                outcomes[refused(cancel, {409: {"no-transfer-pending"}})] += 1
            else:
                assert cancel.status_code == 200, cancel.text
                assert cancel.json()["agent_id"] == ana["id"]
                assert cancel.json()["transfer_contact_id"] is None
                # The offer was withdrawn under Ben's accept, or before he reached it.
                allowed = {409: {"reservation-changed", "reservation-not-offered"}}
                outcomes[refused(accept, allowed)] += 1
            await owner_resolves(client, clean_db, t, cid)
    print(f"cancel vs accept over {ROUNDS} rounds: {dict(outcomes)}")


async def test_cancelling_after_the_accept_committed_says_no_transfer_is_waiting(
    app: Any, client: httpx.AsyncClient, clean_db: asyncpg.Connection
) -> None:
    """The losing cancel, played in order: the agent who handed over is told that no
    transfer waits (409); an agent who never held the conversation still gets 403."""
    t = await two_teams(app, client)
    cid, _ = await assigned_to_ana(app, client, clean_db, t, 0)
    offer = await warm_offer_to_ben(client, t, cid)
    r = await client.post(f"/v1/reservations/{offer['id']}/accept", headers=t["ben"]["headers"])
    assert r.status_code == 200, r.text
    r = await client.delete(f"/v1/conversations/{cid}/transfer", headers=t["ana"]["headers"])
    assert refused(r, {409: {"no-transfer-pending"}})
    profile = t["profile"]["id"]
    cleo = await create_agent(client, t, profile_id=profile, name="Cleo Nobody")
    r = await client.delete(f"/v1/conversations/{cid}/transfer", headers=cleo["headers"])
    assert refused(r, {403: {"not-a-participant"}})
    conv = await clean_db.fetchrow("SELECT agent_id FROM conversations WHERE id = $1", cid)
    assert str(conv["agent_id"]) == t["ben"]["id"]


async def test_two_accepts_of_one_transfer_offer_hand_it_over_once(
    app: Any, client: httpx.AsyncClient, clean_db: asyncpg.Connection
) -> None:
    t = await two_teams(app, client)
    ben = t["ben"]
    codes: Counter[str] = Counter()
    async with racers(app) as (first, second):
        for i in range(ROUNDS):
            cid, ana_work = await assigned_to_ana(app, client, clean_db, t, i)
            offer = await warm_offer_to_ben(client, t, cid)
            url = f"/v1/reservations/{offer['id']}/accept"
            answers = await race(
                i, first.post(url, headers=ben["headers"]), second.post(url, headers=ben["headers"])
            )
            assert sorted(r.status_code for r in answers) == [200, 409], [r.text for r in answers]
            loser = next(r for r in answers if r.status_code != 200)
            codes[refused(loser, {409: {"reservation-changed", "reservation-not-offered"}})] += 1
            assert await warm_transfer_settled(clean_db, t, cid, ana_work, offer) == "accepted"
            await owner_resolves(client, clean_db, t, cid)
    print(f"double accept over {ROUNDS} rounds, the second answered: {dict(codes)}")


async def test_the_first_agent_resolving_while_the_target_accepts_keeps_the_transfer(
    app: Any, client: httpx.AsyncClient, clean_db: asyncpg.Connection
) -> None:
    """While a warm transfer waits the first agent cannot resolve (cancel it first);
    once it is accepted they no longer take part. Either way the accept stands."""
    t = await two_teams(app, client)
    ana, ben = t["ana"], t["ben"]
    codes: Counter[str] = Counter()
    async with racers(app) as (first, second):
        for i in range(ROUNDS):
            cid, ana_work = await assigned_to_ana(app, client, clean_db, t, i)
            offer = await warm_offer_to_ben(client, t, cid)
            resolve, accept = await race(
                i,
                first.post(f"/v1/conversations/{cid}/resolve", headers=ana["headers"]),
                second.post(f"/v1/reservations/{offer['id']}/accept", headers=ben["headers"]),
            )
            assert accept.status_code == 200, accept.text
            allowed = {409: {"transfer-pending"}, 403: {"not-a-participant"}}
            codes[refused(resolve, allowed)] += 1
            assert await warm_transfer_settled(clean_db, t, cid, ana_work, offer) == "accepted"
            assert (await topics(clean_db, cid))["conversation.resolved"] == 0
            await owner_resolves(client, clean_db, t, cid)
    print(f"resolve vs accept (warm) over {ROUNDS} rounds, resolve answered: {dict(codes)}")


async def test_resolving_a_cold_transferred_conversation_while_it_is_accepted(
    app: Any, client: httpx.AsyncClient, clean_db: asyncpg.Connection
) -> None:
    """A supervisor (the tenant's key) resolves a conversation waiting in Billing after
    Ana's cold transfer while Ben accepts its offer: resolve first withdraws the offer;
    accept first hands it to Ben and the resolve then ends Ben's work. It ends resolved
    with nobody holding it, every minute handled counted once."""
    t = await two_teams(app, client)
    ana, ben = t["ana"], t["ben"]
    outcomes: Counter[str] = Counter()
    async with racers(app) as (first, second):
        for i in range(ROUNDS):
            cid, ana_work = await assigned_to_ana(app, client, clean_db, t, i)
            r = await client.post(
                f"/v1/conversations/{cid}/transfer",
                json={"queue_id": t["billing"]["id"], "mode": "cold"},
                headers=ana["headers"],
            )
            assert r.status_code == 200, r.text
            offer = await wait_offer(client, ben, r.json()["contact_id"])
            resolve, accept = await race(
                i,
                first.post(f"/v1/conversations/{cid}/resolve", headers=t["headers"]),
                second.post(f"/v1/reservations/{offer['id']}/accept", headers=ben["headers"]),
            )
            assert resolve.status_code == 200, resolve.text
            conv = await clean_db.fetchrow(
                "SELECT state, transfer_contact_id FROM conversations WHERE id = $1", cid
            )
            assert (conv["state"], conv["transfer_contact_id"]) == ("resolved", None)
            assert await live_people(clean_db, cid) == []
            assert await live_contacts(clean_db, cid) == []
            events = await topics(clean_db, cid)
            assert events["conversation.resolved"] == 1
            assert events["transfer.requested"] == 1
            if accept.status_code == 200:
                outcomes["accepted"] += 1
                # Ben held it between the accept and the resolve: his work ended too.
                assert await state_of(clean_db, "reservations", offer["id"]) == "completed"
                assert await handled_keys(clean_db, cid) == handled(ana_work, offer["id"])
                assert (events["agent.joined"], events["agent.left"]) == (2, 1)
            else:
                outcomes["resolved first"] += 1
                allowed = {409: {"reservation-changed", "reservation-not-offered"}}
                outcomes[refused(accept, allowed)] += 1
                assert await state_of(clean_db, "contacts", offer["contact_id"]) == "abandoned"
                assert await state_of(clean_db, "reservations", offer["id"]) == "rescinded"
                assert await handled_keys(clean_db, cid) == handled(ana_work)
                assert (events["agent.joined"], events["agent.left"]) == (1, 1)
            assert (await used_points(clean_db, ana), await used_points(clean_db, ben)) == (0, 0)
    print(f"resolve vs accept over {ROUNDS} rounds: {dict(outcomes)}")


async def test_a_cold_transfer_racing_a_customer_message_keeps_the_message_once(
    app: Any, client: httpx.AsyncClient, clean_db: asyncpg.Connection
) -> None:
    t = await two_teams(app, client)
    ana = t["ana"]
    # Nobody takes Billing's contacts here: each conversation stays waiting in line.
    r = await client.put(
        "/v1/agent/presence", json={"status": "offline"}, headers=t["ben"]["headers"]
    )
    assert r.status_code == 200, r.text
    orderings: Counter[str] = Counter()
    async with racers(app, 1) as (first,):
        for i in range(ROUNDS):
            visitor = f"v_race_{uuid.uuid4().hex}"
            cid, ana_work = await assigned_to_ana(app, client, clean_db, t, i, visitor)
            text = f"Round {i}: are you still there? {uuid.uuid4().hex}"
            transfer, got = await race(
                i,
                first.post(
                    f"/v1/conversations/{cid}/transfer",
                    json={"queue_id": t["billing"]["id"], "mode": "cold"},
                    headers=ana["headers"],
                ),
                customer_writes(app, t, t["chat"], text, visitor=visitor, conversation_id=cid),
            )
            assert transfer.status_code == 200, transfer.text
            assert (got.conversation_id, got.duplicate) == (cid, False)
            # The message is kept, once, and announced once.
            stored = await clean_db.fetch(
                "SELECT id FROM messages WHERE conversation_id = $1 AND body = $2", cid, text
            )
            assert [m["id"] for m in stored] == [got.message_id]
            announced = await clean_db.fetchval(
                "SELECT count(*) FROM conversation_events WHERE conversation_id = $1 "
                "AND topic = 'message.created' AND payload->'message'->>'id' = $2",
                cid,
                str(got.message_id),
            )
            assert announced == 1
            last_event = await clean_db.fetchval(
                "SELECT topic FROM conversation_events WHERE conversation_id = $1 "
                "AND topic IN ('message.created', 'transfer.requested') ORDER BY id DESC LIMIT 1",
                cid,
            )
            orderings[f"{last_event} last"] += 1
            # Queued once, to Billing: one live contact, nobody holding the conversation.
            conv = await clean_db.fetchrow(
                "SELECT state, queue_id, contact_id FROM conversations WHERE id = $1", cid
            )
            assert (conv["state"], str(conv["queue_id"])) == ("queued", t["billing"]["id"])
            live = await live_contacts(clean_db, cid)
            assert [(c["id"], str(c["queue_id"]), c["state"]) for c in live] == [
                (conv["contact_id"], t["billing"]["id"], "queued")
            ]
            assert await live_people(clean_db, cid) == []
            events = await topics(clean_db, cid)
            assert events["conversation.queued"] == 2  # the first routing, the transfer
            assert events["agent.left"] == 1
            assert await state_of(clean_db, "reservations", ana_work) == "completed"
            assert await handled_keys(clean_db, cid) == handled(ana_work)
            assert await used_points(clean_db, ana) == 0
            # Clear the line for the next round.
            r = await client.post(f"/v1/conversations/{cid}/resolve", headers=t["headers"])
            assert r.status_code == 200, r.text
    print(f"cold transfer vs message over {ROUNDS} rounds: {dict(orderings)}")


async def test_the_race_harness_runs_requests_concurrently(
    app: Any, client: httpx.AsyncClient, clean_db: asyncpg.Connection
) -> None:
    """The races above only mean something if the two requests overlap in PostgreSQL:
    a request blocked on a row lock must not keep the other from running."""
    t = await two_teams(app, client)
    cid, _ = await assigned_to_ana(app, client, clean_db, t, 0)
    blocker = await clean_db.fetchval("SELECT pg_backend_pid()")
    tx = clean_db.transaction()
    await tx.start()
    open_ = True
    try:
        await clean_db.execute("SELECT 1 FROM conversations WHERE id = $1 FOR UPDATE", cid)
        async with racers(app) as (first, second):
            note = asyncio.ensure_future(
                first.post(
                    f"/v1/conversations/{cid}/notes",
                    json={"text": "waiting on the lock"},
                    headers=t["ana"]["headers"],
                )
            )

            async def blocked() -> bool:
                waiting = await second.get("/v1/conversations", headers=t["headers"])
                assert waiting.status_code == 200, waiting.text  # others still get answers
                return bool(
                    await clean_db.fetchval(
                        # pg_locks is read live (pg_stat_activity would be the
                        # snapshot taken at this transaction's first look).
                        "SELECT count(*) FROM pg_locks "
                        "WHERE NOT granted AND $1 = ANY(pg_blocking_pids(pid))",
                        blocker,
                    )
                )

            assert await wait_for(blocked)
            assert not note.done()
            await tx.commit()
            open_ = False
            assert (await note).status_code == 201
    finally:
        if open_:
            await tx.rollback()
