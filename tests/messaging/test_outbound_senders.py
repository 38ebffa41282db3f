"""Agent replies on SMS, WhatsApp and WeChat channels reach the provider in its wire
format; the provider's answer decides the message's fate: sent with its id, queued for
a retry when the provider failed transiently, failed with its reason otherwise."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from app.conversations.delivery import retry_due
from app.conversations.outbound import send_message
from app.conversations.schemas import MessageRead
from app.db.tenant import TenantScope, bind_tenant, mint_scope
from app.storage.base import tenant_key
from tests.messaging.fake_providers import FakeProviders
from tests.messaging.ingress import (
    create_channel,
    message,
    messaging_tenant,
    post_meta,
    post_twilio,
    public,
    reply,
)
from tests.messaging.test_webhooks_meta import wa_payload, wa_text, whatsapp_channel
from tests.messaging.test_webhooks_twilio import CUSTOMER, OUR_NUMBER, inbound
from tests.messaging.test_webhooks_wechat import push, wechat_channel, xml


async def twilio_conversation(
    app, client, clean_db, providers: FakeProviders, **config: Any
) -> tuple[dict[str, Any], uuid.UUID, str]:
    tenant = await messaging_tenant(client)
    sid, token = providers.twilio_account()
    await create_channel(client, tenant, "sms", "twilio", sid, {"auth_token": token}, **config)
    path = f"/v1/webhooks/sms/twilio/{sid}"
    r = await post_twilio(client, app, path, inbound(sid), token)
    assert r.status_code == 200, r.text
    return tenant, await clean_db.fetchval("SELECT id FROM conversations"), sid


async def test_an_sms_reply_in_twilios_wire_format(app, client, clean_db, wired):
    tenant, conv_id, sid = await twilio_conversation(app, client, clean_db, wired)

    sent = await reply(app, tenant, conv_id, "Your parcel ships today.")

    [call] = wired.made(rf"/2010-04-01/Accounts/{sid}/Messages\.json")
    assert call.form == {
        "To": [CUSTOMER],
        "From": [OUR_NUMBER],  # the number the customer wrote to
        "Body": ["Your parcel ships today."],
        "StatusCallback": [public(app, f"/v1/webhooks/sms/twilio/{sid}")],
    }
    assert call.headers["authorization"].startswith("Basic ")
    row = await message(clean_db, sent.id)
    assert row["status"] == "sent" and row["provider_message_id"].startswith("SM")
    assert row["error"] is None and row["attempts"] == 1
    meters = await clean_db.fetch("SELECT meter, attributes FROM usage_events ORDER BY recorded_at")
    assert [m["meter"] for m in meters] == ["messages.sms", "messages.sms"]


async def test_a_provider_outage_leaves_the_reply_queued_for_a_retry(app, client, clean_db, wired):
    tenant, conv_id, _ = await twilio_conversation(app, client, clean_db, wired)
    wired.fail_next(500)

    sent = await reply(app, tenant, conv_id, "Still there?")

    row = await message(clean_db, sent.id)
    assert row["status"] == "queued" and row["attempts"] == 1
    assert row["error"] == "HTTP 500, Twilio error 20500: Service error"
    assert await clean_db.fetchval("SELECT count(*) FROM outbound_work") == 1
    # Backed off: not tried again before its time.
    assert row["next_attempt_at"] is not None
    args = (app.state.session_factory, app.state.settings, app.state.object_store)
    tenant_id = uuid.UUID(tenant["tenant"]["id"])
    assert await retry_due(*args, tenant_id, older_than=timedelta(0)) == 0
    await clean_db.execute(
        "UPDATE messages SET next_attempt_at = now() - interval '1 second' WHERE id = $1",
        sent.id,
    )
    # The retry goes through once Twilio is back.
    tried = await retry_due(
        app.state.session_factory,
        app.state.settings,
        app.state.object_store,
        uuid.UUID(tenant["tenant"]["id"]),
        older_than=timedelta(0),
    )
    assert tried == 1
    row = await message(clean_db, sent.id)
    assert row["status"] == "sent" and row["attempts"] == 2 and row["error"] is None


async def test_a_refused_reply_fails_with_the_providers_reason(app, client, clean_db, wired):
    tenant, conv_id, _ = await twilio_conversation(app, client, clean_db, wired)
    wired.fail_next(
        400,
        body={
            "code": 21610,
            "message": "Attempt to send to unsubscribed recipient",
            "more_info": "https://www.twilio.com/docs/errors/21610",
            "status": 400,
        },
    )

    sent = await reply(app, tenant, conv_id, "Hello")

    row = await message(clean_db, sent.id)
    assert row["status"] == "failed"
    assert row["error"] == "HTTP 400, Twilio error 21610: Attempt to send to unsubscribed recipient"
    status = await clean_db.fetchval(
        "SELECT payload->>'status' FROM conversation_events WHERE topic = 'message.status'"
    )
    assert status == "failed"


async def test_without_a_number_written_to_sms_sends_from_the_channels_number(
    app, client, clean_db, wired
):
    tenant = await messaging_tenant(client)
    r = await client.post(
        "/v1/phone-numbers", json={"number": "+14155550123"}, headers=tenant["headers"]
    )
    assert r.status_code == 201, r.text
    number_id = r.json()["id"]
    sid, token = wired.twilio_account()
    await create_channel(
        client, tenant, "sms", "twilio", sid, {"auth_token": token}, phone_number_ids=[number_id]
    )
    path = f"/v1/webhooks/sms/twilio/{sid}"
    await post_twilio(client, app, path, inbound(sid), token)
    # As if the customer had never written to one of our numbers (a proactive thread).
    await clean_db.execute("UPDATE messages SET to_address = NULL")
    conv_id = await clean_db.fetchval("SELECT id FROM conversations")

    await reply(app, tenant, conv_id, "Hi from our main number")

    [call] = wired.made(rf"/2010-04-01/Accounts/{sid}/Messages\.json")
    assert call.form["From"] == ["+14155550123"]


async def test_an_attachment_goes_as_a_presigned_url(app, client, clean_db, wired):
    tenant, conv_id, sid = await twilio_conversation(app, client, clean_db, wired)
    data = b"%PDF-1.7 invoice"
    attachment_id = uuid.uuid4()
    key = tenant_key(tenant["tenant"]["id"], "conversations", str(conv_id), "invoice.pdf")
    await app.state.object_store.put(key, data, "application/pdf")
    await clean_db.execute(
        "INSERT INTO attachments (tenant_id, id, conversation_id, object_key, filename, "
        "content_type, max_bytes, status, uploaded_by, created_at) "
        "VALUES ($1, $2, $3, $4, 'invoice.pdf', 'application/pdf', 1000, 'pending', 'agent', now())",
        uuid.UUID(tenant["tenant"]["id"]),
        attachment_id,
        conv_id,
        key,
    )

    sent = await reply(app, tenant, conv_id, "Your invoice", attachment_ids=[attachment_id])

    [call] = wired.made(rf"/2010-04-01/Accounts/{sid}/Messages\.json")
    [media_url] = call.form["MediaUrl"]
    assert media_url.startswith(app.state.settings.public_url)
    parts = urlsplit(media_url)
    fetched = await client.get(parts.path + "?" + parts.query)
    assert fetched.status_code == 200 and fetched.content == data
    assert (await message(clean_db, sent.id))["status"] == "sent"


async def test_a_whatsapp_reply_outside_the_window_fails_with_metas_reason(
    app, client, clean_db, wired
):
    tenant, phone_id, app_secret = await whatsapp_channel(client, wired)
    await post_meta(client, "whatsapp", wa_payload(wa_text(phone_id)), app_secret)
    conv_id = await clean_db.fetchval("SELECT id FROM conversations")
    wired.fail_next(
        400,
        body={
            "error": {
                "message": "(#131047) Re-engagement message",
                "type": "OAuthException",
                "code": 131047,
                "fbtrace_id": "Az8or2yhqkZfEZ-_4Qn_Bam",
            }
        },
    )

    sent = await reply(app, tenant, conv_id, "Following up")

    row = await message(clean_db, sent.id)
    assert row["status"] == "failed"
    assert row["error"] == "HTTP 400, Graph error 131047: (#131047) Re-engagement message"


async def test_a_throttled_wechat_reply_stays_queued_for_a_retry(app, client, clean_db, wired):
    tenant, appid, token = await wechat_channel(client, wired)
    await push(client, appid, token, xml(Content="hi"))
    conv_id = await clean_db.fetchval("SELECT id FROM conversations")
    # The token call succeeds; the send answers WeChat's "system busy".
    wired.fail_next(200, body={"access_token": "t-" + uuid.uuid4().hex, "expires_in": 7200})
    wired.fail_next(200, body={"errcode": -1, "errmsg": "system error"})

    sent = await reply(app, tenant, conv_id, "稍等")

    row = await message(clean_db, sent.id)
    assert row["status"] == "queued" and row["error"] == "send: errcode -1: system error"


async def undelivered_reply(
    app, client, clean_db, providers: FakeProviders, text: str
) -> tuple[TenantScope, MessageRead]:
    """An agent's reply on a Twilio conversation, committed without its after-commit
    delivery (as if the process died right after the commit)."""
    tenant, conv_id, _ = await twilio_conversation(app, client, clean_db, providers)
    scope = mint_scope(uuid.UUID(tenant["tenant"]["id"]))
    async with app.state.session_factory() as session, session.begin():
        await bind_tenant(session, scope)
        sent = await send_message(
            session,
            scope,
            conversation_id=conv_id,
            text=text,
            sender_kind="agent",
            agent_id=None,
            store=app.state.object_store,
            settings=app.state.settings,
            factory=None,  # the after-commit delivery never runs
        )
    return scope, sent


async def test_the_sweeper_delivers_a_reply_whose_delivery_never_ran(app, client, clean_db, wired):
    """A crash between the commit and the delivery leaves the reply queued; the API
    processes' sweeper finds the tenant in outbound_work and sends it."""
    from app.conversations.delivery import sweep_once

    _, sent = await undelivered_reply(app, client, clean_db, wired, "Lost in a crash?")
    assert (await message(clean_db, sent.id))["status"] == "queued"
    await clean_db.execute("UPDATE outbound_work SET due_at = now() - interval '1 second'")
    args = (app.state.session_factory, app.state.settings, app.state.object_store)
    assert await sweep_once(*args) == 1
    row = await message(clean_db, sent.id)
    assert row["status"] == "sent" and row["attempts"] == 1
    assert await clean_db.fetchval("SELECT count(*) FROM outbound_work") == 0
    assert len(wired.made(r".*/Messages\.json")) == 1


async def test_two_deliverers_send_a_reply_once(app, client, clean_db, wired):
    """Two processes racing to deliver the same reply (after-commit hook and sweeper):
    the lease lets one send; the other finds it in flight."""
    import asyncio

    from app.conversations.delivery import deliver_one

    scope, sent = await undelivered_reply(app, client, clean_db, wired, "Only once, please.")
    args = (app.state.session_factory, app.state.settings, app.state.object_store)
    outcomes = await asyncio.gather(
        deliver_one(*args, scope.tenant_id, sent.id), deliver_one(*args, scope.tenant_id, sent.id)
    )
    assert sorted(outcomes) == ["gone", "sent"]
    assert len(wired.made(r".*/Messages\.json")) == 1


async def test_a_whatsapp_reply_past_the_24_hour_window_is_refused_before_sending(
    app, client, clean_db, wired
):
    """Meta takes free-form replies only within 24 hours of the customer's last message:
    the agent hears it at once (409, naming the channel), nothing is queued or sent."""
    from app.core.errors import Conflict

    tenant, phone_id, app_secret = await whatsapp_channel(client, wired)
    await post_meta(client, "whatsapp", wa_payload(wa_text(phone_id)), app_secret)
    conv_id = await clean_db.fetchval("SELECT id FROM conversations")
    await clean_db.execute(
        "UPDATE messages SET created_at = now() - interval '25 hours' WHERE direction = 'inbound'"
    )
    try:
        await reply(app, tenant, conv_id, "Are you still there?")
    except Conflict as exc:
        assert exc.code == "service-window-closed" and exc.field == "body.channel_id"
    else:
        raise AssertionError("a reply outside the service window was queued")
    assert (
        await clean_db.fetchval("SELECT count(*) FROM messages WHERE direction = 'outbound'") == 0
    )
    assert wired.made(r".*/messages") == []
    # The customer writes again: the window reopens.
    await post_meta(client, "whatsapp", wa_payload(wa_text(phone_id, "Hello?")), app_secret)
    sent = await reply(app, tenant, conv_id, "Yes, here!")
    assert (await message(clean_db, sent.id))["status"] == "sent"
