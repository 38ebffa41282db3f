"""Issue 5's "done when", tried as a new user would, against real PostgreSQL, a real
API server (uvicorn) for the WebSockets, a routing worker and our SMTP server:

A visitor browses, is invited by a proactive rule, chats from the widget and waits with
a visible place in line; an agent is offered the chat with the page trail and history,
accepts and answers; she transfers it warm (with a note) to the billing queue, whose
agent accepts and follows up by email in the same conversation; the customer's answer
comes back over SMTP into the same thread; the customer's timeline shows all of it in
order. Forged webhooks and mail for unknown addresses are refused.
"""

from __future__ import annotations

import asyncio
import smtplib
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from functools import partial
from typing import Any

import asyncpg
import httpx
import pytest
from websockets.asyncio.client import connect

from app.emailing.ingest import accepts, ingest
from app.emailing.smtp_server import InboundHandler, start_smtp_server
from tests.conversations.desk import worker  # noqa: F401 - the fixture
from tests.live_server import serve
from tests.routing.conftest import (
    add_profile,
    add_queue,
    create_agent,
    staffed_tenant,
    wait_for,
)
from tests.routing.test_stream import SMALL_POOL, Desktop
from tests.webchat.conftest import ORIGIN, open_session, webchat_channel
from tests.webchat.test_stream import open_widget

pytestmark = pytest.mark.usefixtures("worker")

CUSTOMER_EMAIL = "dana.diaz@customer.example"


@pytest.fixture(scope="module")
def live(settings: Any, db_urls: Any) -> Iterator[str]:
    quick = settings.model_copy(update={"widget_position_seconds": 0.2} | SMALL_POOL)
    with serve(quick, db_urls.app) as url:
        yield url.replace("http://", "ws://")


@pytest.fixture
async def sockets() -> AsyncIterator[list[Any]]:
    opened: list[Any] = []
    yield opened
    for s in opened:
        await s.ws.close()


async def desktop(base: str, agent: dict[str, Any], opened: list[Any]) -> Desktop:
    ws = await connect(
        f"{base}/v1/agent/stream",
        additional_headers={"Authorization": f"Bearer {agent['access_token']}"},
    )
    desk = Desktop(ws)
    opened.append(desk)
    await desk.expect(type="hello")
    return desk


def daytime_zone() -> str:
    """A time zone where it is now early afternoon (outside any quiet hours)."""
    hour = datetime.now(UTC).hour
    offset = (13 - hour + 12) % 24 - 12  # UTC-12 .. UTC+11
    return "Etc/GMT" + (f"{-offset:+d}" if offset else "")


def ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()


async def test_a_customer_never_repeats_themselves(
    app: Any,
    client: httpx.AsyncClient,
    clean_db: asyncpg.Connection,
    live: str,
    sockets: list[Any],
) -> None:
    settings = app.state.settings
    # -- the tenant: Support (Ana) and Billing (Ben), a chat widget, a support mailbox
    t = await staffed_tenant(client, agents=1, queue={"channels": ["chat", "email"]})
    h = t["headers"]
    ana = t["agents"][0]
    billing = await add_queue(client, t, name="Billing", channels=["chat", "email"])
    profile = await add_profile(client, t, [{"queue_id": billing["id"]}])
    ben = await create_agent(client, t, profile_id=profile["id"], name="Ben Billing")
    chat = await webchat_channel(client, t)
    mail = ok(
        await client.post(
            "/v1/channels",
            json={
                "type": "email",
                "name": "Support mail",
                "config": {"local_part": f"help-{uuid.uuid4().hex[:8]}", "queue_id": billing["id"]},
            },
            headers=h,
        ),
        201,
    )
    ok(
        await client.post(
            "/v1/proactive-rules",
            json={
                "name": "Hesitating at checkout",
                "channel_id": chat["id"],
                "conditions": {"min_pages_seen": 2, "url_contains": "/checkout"},
                "action": "invite_chat",
                "message": "Need a hand with your order?",
            },
            headers=h,
        ),
        201,
    )

    # -- a visitor browses; the second page (checkout) brings the invitation
    visitor = await open_session(client, {"widget_key": chat["config"]["widget_key"]})
    vh = visitor["headers"]
    first = ok(
        await client.post(
            "/v1/widget/page-views",
            json={"url": f"{ORIGIN}/boots/trail-42", "title": "Trail boots"},
            headers=vh,
        ),
        201,
    )
    assert first["invitation"] is None
    second = ok(
        await client.post(
            "/v1/widget/page-views",
            json={
                "url": f"{ORIGIN}/checkout",
                "title": "Checkout",
                # The widget reports the browser's zone: quiet hours are the customer's.
                "attributes": {"cart_value": 189, "timezone": daytime_zone()},
            },
            headers=vh,
        ),
        201,
    )
    invitation = second["invitation"]
    assert invitation["message"] == "Need a hand with your order?"

    # -- the pre-chat form, then the chat starts from the invitation
    ok(
        await client.post(
            "/v1/widget/identify", json={"name": "Dana Diaz", "email": CUSTOMER_EMAIL}, headers=vh
        )
    )
    started = ok(
        await client.post(
            f"/v1/widget/invitations/{invitation['decision_id']}/accept",
            json={"text": "Do the trail boots run small?"},
            headers=vh,
        ),
        201,
    )
    cid = started["conversation"]["id"]
    waiting = ok(await client.get(f"/v1/widget/conversations/{cid}", headers=vh))
    assert waiting["state"] == "queued" and waiting["position"] == 1

    widget = await open_widget(live, visitor, cid)
    sockets.append(widget)
    hello = await widget.expect(type="hello")
    assert hello["conversation"]["position"] == 1

    # -- Ana's desktop is offered the chat with the trail and the history
    ana_desk = await desktop(live, ana, sockets)
    assert (await ana_desk.call("set_state", status="available"))["type"] == "result"
    offer = await ana_desk.expect(type="event", topic="offer.created", within=15)
    context = offer["payload"]["context"]
    assert context["customer"]["display_name"] == "Dana Diaz"
    assert [p["title"] for p in context["page_trail"]] == ["Trail boots", "Checkout"]
    assert [m["body"] for m in context["messages"]] == ["Do the trail boots run small?"]
    kinds = [i["kind"] for i in context["recent_interactions"]]
    assert "proactive.invited" in kinds and "page.viewed" in kinds
    r = await ana_desk.call("accept", reservation_id=offer["payload"]["reservation_id"])
    assert r["type"] == "result", r
    joined = await widget.expect(type="event", topic="agent.joined")
    assert joined["payload"] == {"name": "Agent 0", "role": "owner"}
    r = await ana_desk.call(
        "conversation.reply", conversation_id=cid, text="They do: take one size up."
    )
    assert r["type"] == "result", r
    said = await widget.expect(type="event", topic="message.created")
    assert said["payload"]["message"]["body"] == "They do: take one size up."

    # -- the customer asks about an invoice: a warm transfer to Billing with a note
    r = await client.post(
        f"/v1/widget/conversations/{cid}/messages",
        json={"text": "Also, my last invoice charged me twice.", "client_message_id": "m-2"},
        headers=vh,
    )
    ok(r, 201)
    r = await ana_desk.call(
        "conversation.transfer",
        conversation_id=cid,
        queue_id=billing["id"],
        mode="warm",
        note="Double charge on the last invoice; sizing answered.",
    )
    assert r["type"] == "result", r
    ben_desk = await desktop(live, ben, sockets)
    assert (await ben_desk.call("set_state", status="available"))["type"] == "result"
    offer = await ben_desk.expect(type="event", topic="offer.created", within=15)
    context = offer["payload"]["context"]
    assert context["transfer"]["note"] == "Double charge on the last invoice; sizing answered."
    assert [m["body"] for m in context["messages"] if m["direction"] != "internal"] == [
        "Do the trail boots run small?",
        "They do: take one size up.",
        "Also, my last invoice charged me twice.",
    ]
    r = await ben_desk.call("accept", reservation_id=offer["payload"]["reservation_id"])
    assert r["type"] == "result", r
    joined = await widget.expect(type="event", topic="agent.joined")
    assert joined["payload"] == {"name": "Ben Billing", "role": "owner"}
    await ana_desk.expect(type="event", topic="conversation.transfer.completed")

    # -- Ben follows up by email, in the same conversation, then waits for the customer
    r = await ben_desk.call(
        "conversation.reply",
        conversation_id=cid,
        channel_id=mail["id"],
        text="I have refunded the second charge; the receipt follows by mail.",
    )
    assert r["type"] == "result", r
    sent_id = uuid.UUID(r["message"]["id"])

    async def delivered() -> asyncpg.Record | None:
        row = await clean_db.fetchrow(
            "SELECT status, email_message_id, to_address, provider_message_id FROM messages "
            "WHERE id = $1",
            sent_id,
        )
        return row if row["status"] == "sent" else None

    followup = await wait_for(delivered, timeout=10)  # delivered by the server after commit
    assert followup["to_address"] == CUSTOMER_EMAIL
    assert followup["provider_message_id"] == followup["email_message_id"]
    r = await ben_desk.call("conversation.pending", conversation_id=cid)
    assert r["type"] == "result", r

    # -- the customer answers the mail; it comes back over SMTP into the same thread
    factory = app.state.session_factory
    handler = InboundHandler(
        accepts=partial(accepts, factory, settings),
        deliver=partial(ingest, factory, settings, app.state.object_store),
        domain=settings.inbound_email_domain,
        max_recipients=settings.smtp_max_recipients,
    )
    server = await start_smtp_server("127.0.0.1", 0, handler)
    answer = EmailMessage()
    answer["From"] = f"Dana Diaz <{CUSTOMER_EMAIL}>"
    answer["To"] = mail["config"]["address"]
    answer["Subject"] = "Re: Do the trail boots run small?"
    answer["Message-ID"] = "<answer-1@customer.example>"
    answer["In-Reply-To"] = followup["email_message_id"]
    answer["References"] = followup["email_message_id"]
    answer.set_content("Thank you, refund received.\n\nOn Tuesday, Billing wrote:\n> refunded")
    unknown = f"nobody-{uuid.uuid4().hex[:6]}@{settings.inbound_email_domain}"

    def send() -> tuple[dict[str, Any], int]:
        with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as smtp:
            refused = smtp.sendmail(CUSTOMER_EMAIL, [answer["To"]], answer.as_bytes())
            smtp.mail(CUSTOMER_EMAIL)
            code, _ = smtp.rcpt(unknown)
            smtp.rset()
            return refused, code

    try:
        refused, unknown_code = await asyncio.to_thread(send)
    finally:
        await server.close()
    assert refused == {}
    assert unknown_code == 550  # mail for an unknown address is refused
    row = await clean_db.fetchrow(
        "SELECT conversation_id, channel FROM messages WHERE email_message_id = $1",
        "<answer-1@customer.example>",
    )
    assert str(row["conversation_id"]) == cid and row["channel"] == "email"
    conv = ok(await client.get(f"/v1/conversations/{cid}", headers=h))
    assert conv["state"] == "queued"  # the customer wrote again: back in line

    # -- forged SMS webhooks are refused and write nothing
    account = "AC" + uuid.uuid4().hex
    ok(
        await client.post(
            "/v1/channels",
            json={
                "type": "sms",
                "name": "Text us",
                "config": {"provider": "twilio", "provider_account_id": account},
                "credentials": {"auth_token": "the-real-auth-token"},
            },
            headers=h,
        ),
        201,
    )
    before = await clean_db.fetchval("SELECT count(*) FROM messages")
    form = {
        "AccountSid": account,
        "From": "+14155550100",
        "To": "+14155550199",
        "Body": "forged",
        "MessageSid": "SM" + uuid.uuid4().hex,
    }
    r = await client.post(
        f"/v1/webhooks/sms/twilio/{account}",
        data=form,
        headers={"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJlIGF0IGFsbA=="},
    )
    assert r.status_code == 403 and r.json()["code"] == "signature-invalid", r.text
    r = await client.post(f"/v1/webhooks/sms/twilio/{account}", data=form)
    assert r.status_code == 403, r.text
    r = await client.post("/v1/webhooks/sms/twilio/AC" + "0" * 32, data=form)
    assert r.status_code == 404, r.text
    assert await clean_db.fetchval("SELECT count(*) FROM messages") == before

    # -- the timeline tells the whole story, in order, across channels
    customer_id = conv["customer_id"]
    items = ok(await client.get(f"/v1/customers/{customer_id}/timeline?limit=200", headers=h))
    story = [(i["kind"], i["channel"]) for i in items["items"]]
    assert story == [
        ("customer.created", None),
        ("page.viewed", "webchat"),
        ("page.viewed", "webchat"),
        ("proactive.invited", "webchat"),
        ("conversation.opened", "webchat"),
        ("message.received", "webchat"),
        ("conversation.assigned", "webchat"),  # Ana
        ("message.sent", "webchat"),
        ("message.received", "webchat"),
        ("transfer.requested", "webchat"),
        ("conversation.transferred", "webchat"),  # Ben took it
        ("message.sent", "email"),
        ("conversation.pending", "email"),
        ("message.received", "email"),
        ("conversation.reopened", "email"),
    ], "\n".join(map(str, story))
    times = [i["at"] for i in items["items"]]
    assert times == sorted(times)
