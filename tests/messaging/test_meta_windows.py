"""Meta's messaging windows, as an operator meets them: past WhatsApp's 24 hours an
agent sends an approved template (Graph's template wire format), never free text; a
template is WhatsApp only (through Twilio, the channel must declare it:
test_twilio_templates.py). On Messenger an agent may answer for 7 days,
tagged HUMAN_AGENT after the first 24 hours; bots get the 24 hours only."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from pydantic import ValidationError

from app.conversations.agent_schemas import MessageTemplate, ReplyCreate
from app.conversations.outbound import send_message
from app.core.errors import Conflict, InvalidInput
from app.db.tenant import bind_tenant, mint_scope
from tests.messaging.fake_providers import FakeProviders
from tests.messaging.ingress import create_channel, messaging_tenant, post_meta, post_twilio, reply
from tests.messaging.ingress import message as message_row
from tests.messaging.test_outbound_senders import twilio_conversation
from tests.messaging.test_webhooks_meta import (
    CUSTOMER_WA,
    PSID,
    messenger_channel,
    page_event,
    page_payload,
    wa_payload,
    wa_text,
    whatsapp_channel,
)
from tests.messaging.test_webhooks_twilio import inbound

ORDER_UPDATE = MessageTemplate(
    name="order_update", language="en_US", parameters=["4711", "tomorrow"]
)


async def whatsapp_conversation(
    app: Any, client: Any, clean_db: Any, wired: FakeProviders, *, hours_ago: float = 0
) -> tuple[dict[str, Any], str, uuid.UUID]:
    tenant, phone_id, app_secret = await whatsapp_channel(client, wired)
    await post_meta(client, "whatsapp", wa_payload(wa_text(phone_id)), app_secret)
    await backdate(clean_db, hours_ago)
    return tenant, phone_id, await clean_db.fetchval("SELECT id FROM conversations")


async def backdate(clean_db: Any, hours: float) -> None:
    """As if the customer's messages were written ``hours`` ago."""
    await clean_db.execute(
        "UPDATE messages SET created_at = now() - make_interval(secs => $1) "
        "WHERE direction = 'inbound'",
        hours * 3600,
    )


async def outbound_count(clean_db: Any) -> int:
    return int(
        await clean_db.fetchval("SELECT count(*) FROM messages WHERE direction = 'outbound'")
    )


# -- WhatsApp templates ---------------------------------------------------------------------


async def test_a_template_goes_out_after_the_24_hours_and_free_text_does_not(
    app, client, clean_db, wired
):
    tenant, phone_id, conv_id = await whatsapp_conversation(
        app, client, clean_db, wired, hours_ago=30
    )
    wired.approve_template(phone_id, "order_update", "en_US", 2)

    with pytest.raises(Conflict) as refused:
        await reply(app, tenant, conv_id, "Your order ships tomorrow")
    assert refused.value.code == "service-window-closed"
    assert refused.value.field == "body.channel_id"
    assert "template" in refused.value.detail
    assert await outbound_count(clean_db) == 0

    sent = await reply(app, tenant, conv_id, "", template=ORDER_UPDATE)

    [call] = wired.made(rf"/v[0-9.]+/{phone_id}/messages")
    assert call.json == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": CUSTOMER_WA,
        "type": "template",
        "template": {
            "name": "order_update",
            "language": {"code": "en_US"},
            "components": [
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "text": "4711"},
                        {"type": "text", "text": "tomorrow"},
                    ],
                }
            ],
        },
    }
    assert sent.body == "[template order_update (en_US): 4711, tomorrow]"
    row = await message_row(clean_db, sent.id)
    assert row["status"] == "sent" and row["provider_message_id"].startswith("wamid.")
    assert json.loads(row["template"]) == {
        "name": "order_update",
        "language": "en_US",
        "parameters": ["4711", "tomorrow"],
    }
    # The conversation's timeline shows what was sent, readably.
    summary = await clean_db.fetchval(
        "SELECT summary->>'text' FROM timeline_events WHERE kind = 'message.sent'"
    )
    assert summary == "[template order_update (en_US): 4711, tomorrow]"


async def test_a_template_without_parameters_sends_no_components(app, client, clean_db, wired):
    tenant, phone_id, conv_id = await whatsapp_conversation(app, client, clean_db, wired)
    wired.approve_template(phone_id, "hello_world", "en", 0)

    sent = await reply(
        app, tenant, conv_id, "", template=MessageTemplate(name="hello_world", language="en")
    )

    [call] = wired.made(rf"/v[0-9.]+/{phone_id}/messages")
    assert call.json["template"] == {"name": "hello_world", "language": {"code": "en"}}
    assert sent.body == "[template hello_world (en)]"
    assert (await message_row(clean_db, sent.id))["status"] == "sent"


async def test_a_template_meta_does_not_know_fails_with_metas_reason(app, client, clean_db, wired):
    tenant, _, conv_id = await whatsapp_conversation(app, client, clean_db, wired, hours_ago=48)

    sent = await reply(app, tenant, conv_id, "", template=ORDER_UPDATE)

    row = await message_row(clean_db, sent.id)
    assert row["status"] == "failed"
    assert row["error"] == (
        "HTTP 404, Graph error 132001: (#132001) Template name does not exist in the translation"
    )


async def test_a_template_on_an_sms_channel_is_refused(app, client, clean_db, wired):
    tenant, conv_id, _ = await twilio_conversation(app, client, clean_db, wired)

    with pytest.raises(InvalidInput) as refused:
        await reply(app, tenant, conv_id, "", template=ORDER_UPDATE)

    assert (refused.value.code, refused.value.field) == ("template-not-supported", "body.template")
    assert await outbound_count(clean_db) == 0
    assert wired.made(r".*/Messages\.json") == []


async def test_a_template_a_twilio_channel_does_not_declare_is_refused(
    app, client, clean_db, wired
):
    """Meta judges a template by name when it is sent; Twilio needs its Content SID, so
    a Twilio channel sends only the templates it declares."""
    tenant = await messaging_tenant(client)
    sid, token = wired.twilio_account()
    await create_channel(client, tenant, "whatsapp", "twilio", sid, {"auth_token": token})
    params = inbound(sid, From="whatsapp:+4915112345678", To="whatsapp:+14155238886")
    r = await post_twilio(client, app, f"/v1/webhooks/whatsapp/twilio/{sid}", params, token)
    assert r.status_code == 200, r.text
    conv_id = await clean_db.fetchval("SELECT id FROM conversations")

    with pytest.raises(InvalidInput) as refused:
        await reply(app, tenant, conv_id, "", template=ORDER_UPDATE)

    assert (refused.value.code, refused.value.field) == (
        "template-not-declared",
        "body.template.name",
    )
    assert "config.templates" in refused.value.detail
    assert await outbound_count(clean_db) == 0
    assert wired.made(r".*/Messages\.json") == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"text": "Hi", "template": {"name": "order_update", "language": "en_US"}}, "template"),
        ({}, "text"),
        ({"template": {"name": "Order-Update", "language": "en_US"}}, "template.name"),
        ({"template": {"name": "order_update", "language": "english"}}, "template.language"),
        (
            {"template": {"name": "x", "language": "en", "parameters": ["a"] * 21}},
            "template.parameters",
        ),
        (
            {"template": {"name": "x", "language": "en", "parameters": ["line\nbreak"]}},
            "template.parameters.0",
        ),
        (
            {"template": {"name": "x", "language": "en", "parameters": [""]}},
            "template.parameters.0",
        ),
        (
            {
                "template": {"name": "x", "language": "en"},
                "attachment_ids": ["019a2b7c-0000-7000-8000-0000000000e1"],
            },
            "attachment_ids",
        ),
    ],
)
def test_a_reply_takes_text_or_a_well_formed_template(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        ReplyCreate.model_validate(body)
    [error] = refused.value.errors()
    assert ".".join(str(p) for p in error["loc"]) == field


# -- over REST --------------------------------------------------------------------------------


async def test_an_agent_sends_a_template_over_rest(app, client, clean_db, db_urls, wired):
    from tests.conversations.desk import take
    from tests.routing.conftest import running_router, staffed_tenant

    tenant = await staffed_tenant(client, agents=1, queue={"channels": ["sms", "messaging"]})
    tenant, phone_id, app_secret = await whatsapp_channel(client, wired, tenant=tenant)
    wired.approve_template(phone_id, "order_update", "en_US", 2)
    await post_meta(client, "whatsapp", wa_payload(wa_text(phone_id)), app_secret)
    conv_id = await clean_db.fetchval("SELECT id FROM conversations")
    agent = tenant["agents"][0]
    async with running_router(db_urls):
        await take(client, agent)
    await backdate(clean_db, 25)
    url = f"/v1/conversations/{conv_id}/messages"
    template = ORDER_UPDATE.model_dump()

    r = await client.post(url, json={"text": "Hi", "template": template}, headers=agent["headers"])
    assert r.status_code == 422 and r.json()["field"] == "body.template", r.text
    r = await client.post(url, json={}, headers=agent["headers"])
    assert r.status_code == 422 and r.json()["field"] == "body.text", r.text
    r = await client.post(url, json={"text": "Still there?"}, headers=agent["headers"])
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "service-window-closed" and "template" in r.json()["detail"]

    r = await client.post(url, json={"template": template}, headers=agent["headers"])
    assert r.status_code == 201, r.text
    assert r.json()["body"] == "[template order_update (en_US): 4711, tomorrow]"
    from app.conversations.delivery import drain

    await drain()
    [call] = wired.made(rf"/v[0-9.]+/{phone_id}/messages")
    assert call.json["type"] == "template"
    assert (await message_row(clean_db, r.json()["id"]))["status"] == "sent"


# -- Messenger's human agent tag ------------------------------------------------------------


async def messenger_conversation(
    client: Any, clean_db: Any, wired: FakeProviders
) -> tuple[dict[str, Any], uuid.UUID]:
    tenant, page_id, app_secret = await messenger_channel(client, wired)
    hello = page_event(page_id, message={"mid": "m_" + uuid.uuid4().hex, "text": "Hello?"})
    await post_meta(client, "messenger", page_payload(page_id, hello), app_secret)
    return tenant, await clean_db.fetchval("SELECT id FROM conversations")


async def test_messenger_agents_answer_for_7_days_tagged_after_24_hours(
    app, client, clean_db, wired
):
    tenant, conv_id = await messenger_conversation(client, clean_db, wired)

    await backdate(clean_db, 2)
    within = await reply(app, tenant, conv_id, "Hi! How can we help?")
    await backdate(clean_db, 30)
    tagged = await reply(app, tenant, conv_id, "Sorry for the wait: it is refunded.")

    calls = wired.made(r"/v[0-9.]+/me/messages")
    assert [c.json for c in calls] == [
        {
            "recipient": {"id": PSID},
            "messaging_type": "RESPONSE",
            "message": {"text": "Hi! How can we help?"},
        },
        {
            "recipient": {"id": PSID},
            "messaging_type": "MESSAGE_TAG",
            "tag": "HUMAN_AGENT",
            "message": {"text": "Sorry for the wait: it is refunded."},
        },
    ]
    for sent in (within, tagged):
        assert (await message_row(clean_db, sent.id))["status"] == "sent"

    await backdate(clean_db, 8 * 24)
    with pytest.raises(Conflict) as refused:
        await reply(app, tenant, conv_id, "Anything else?")
    assert refused.value.code == "service-window-closed" and "7 days" in refused.value.detail
    assert await outbound_count(clean_db) == 2
    assert len(wired.made(r"/v[0-9.]+/me/messages")) == 2


async def test_a_messenger_bot_gets_only_the_24_hours(app, client, clean_db, wired):
    tenant, conv_id = await messenger_conversation(client, clean_db, wired)
    await backdate(clean_db, 30)
    scope = mint_scope(uuid.UUID(tenant["tenant"]["id"]))

    with pytest.raises(Conflict) as refused:
        async with app.state.session_factory() as session, session.begin():
            await bind_tenant(session, scope)
            await send_message(
                session,
                scope,
                conversation_id=conv_id,
                text="Automated follow-up",
                sender_kind="bot",
                agent_id=None,
                store=app.state.object_store,
                settings=app.state.settings,
                factory=None,
            )

    assert refused.value.code == "service-window-closed"
    assert await outbound_count(clean_db) == 0


async def test_a_template_on_messenger_is_refused(app, client, clean_db, wired):
    tenant, conv_id = await messenger_conversation(client, clean_db, wired)

    with pytest.raises(InvalidInput) as refused:
        await reply(app, tenant, conv_id, "", template=ORDER_UPDATE)

    assert (refused.value.code, refused.value.field) == ("template-not-supported", "body.template")
