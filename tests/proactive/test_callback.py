"""A visitor accepts a callback offer: the number is checked and added to the profile,
and a voice callback waits in the webchat channel's queue (which must take voice)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from app.core.errors import Conflict, InvalidInput
from app.db.tenant import bind_tenant
from app.proactive.service import request_callback
from tests.proactive.conftest import Visitor, World, at, make_world, make_world_with_queue

NOON = at("2026-11-24T12:00:00+00:00")
CART = "https://www.acme.example/cart"


async def accept(
    world: World, visitor: Visitor, phone: str, decision_id: uuid.UUID | None = None
) -> uuid.UUID:
    async with world.app.state.session_factory() as session, session.begin():
        await bind_tenant(session, world.scope)
        return await request_callback(
            session,
            world.scope,
            world.tenant["tenant"]["plan"],
            customer_id=visitor.customer_id,
            identity_id=visitor.identity.identity_id,
            phone=phone,
            channel_id=visitor.channel_id,
            decision_id=decision_id,
        )


async def test_accepted_offer_queues_a_callback(app: Any, client: httpx.AsyncClient) -> None:
    world, queue_id = await make_world_with_queue(app, client, ["chat", "voice"])
    await world.rule(
        action="offer_callback",
        message="Prefer a call? We can ring you back.",
        conditions={"url_contains": "/cart"},
    )
    visitor = await world.visitor()
    offer = await world.view(visitor, NOON, CART)
    assert offer is not None and offer.action == "offer_callback"

    contact_id = await accept(world, visitor, "+1 (415) 555-0142", offer.decision_id)
    [contact] = await world.rows("SELECT * FROM contacts WHERE id = $1", contact_id)
    assert (contact["channel"], contact["mode"], contact["state"]) == (
        "voice",
        "callback",
        "queued",
    )
    assert contact["callback_number"] == "+14155550142"
    assert contact["queue_id"] == uuid.UUID(queue_id)
    assert contact["customer_ref"] == str(visitor.customer_id)
    [phone] = await world.rows(
        "SELECT id, customer_id FROM customer_identities WHERE kind = 'phone' AND value = $1",
        "+14155550142",
    )
    assert phone["customer_id"] == visitor.customer_id
    [event] = await world.rows(
        "SELECT identity_id, ref_id, channel FROM timeline_events WHERE customer_id = $1 "
        "AND kind = 'callback.requested'",
        visitor.customer_id,
    )
    assert (event["ref_id"], event["identity_id"], event["channel"]) == (
        contact_id,
        phone["id"],
        "voice",
    )
    # Asking again while the callback waits gives the same one.
    assert await accept(world, visitor, "+14155550142") == contact_id
    assert len(await world.rows("SELECT id FROM contacts")) == 1


async def test_callback_refusals(app: Any, client: httpx.AsyncClient) -> None:
    world, _ = await make_world_with_queue(app, client, ["chat", "voice"])
    visitor = await world.visitor()
    with pytest.raises(InvalidInput) as bad_phone:
        await accept(world, visitor, "call me maybe")
    assert bad_phone.value.field == "body.phone"
    with pytest.raises(InvalidInput) as bad_decision:
        await accept(world, visitor, "+14155550142", uuid.uuid4())
    assert bad_decision.value.field == "body.decision_id"
    # A chat-only queue cannot take the call; nothing is written.
    chat_only, _ = await make_world_with_queue(app, client, ["chat"])
    other = await chat_only.visitor()
    with pytest.raises(Conflict) as unavailable:
        await accept(chat_only, other, "+14155550142")
    assert unavailable.value.code == "callback-unavailable"
    no_queue = await make_world(app, client)
    with pytest.raises(Conflict):
        await accept(no_queue, await no_queue.visitor(), "+14155550142")
    assert await world.rows("SELECT id FROM contacts") == []


async def test_number_of_another_profile_is_not_taken_over(
    app: Any, client: httpx.AsyncClient
) -> None:
    world, _ = await make_world_with_queue(app, client, ["chat", "voice"])
    owner = await world.visitor(phone="+14155550199")
    visitor = await world.visitor()
    contact_id = await accept(world, visitor, "+14155550199")
    [phone] = await world.rows(
        "SELECT customer_id FROM customer_identities WHERE value = '+14155550199'"
    )
    assert phone["customer_id"] == owner.customer_id  # no silent merge
    [contact] = await world.rows("SELECT callback_number, customer_ref FROM contacts")
    assert (contact["callback_number"], contact["customer_ref"]) == (
        "+14155550199",
        str(visitor.customer_id),
    )
    assert contact_id is not None
