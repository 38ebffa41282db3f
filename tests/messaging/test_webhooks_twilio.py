"""Twilio webhooks end to end: a signed inbound SMS (or WhatsApp message) becomes a
customer, a routed conversation and a metered message; forgeries, replays and unknown
accounts change nothing; status callbacks move the status of what we sent; media is
fetched into object storage."""

from __future__ import annotations

import json
import uuid
from typing import Any

from tests.messaging.fake_providers import FakeProviders
from tests.messaging.ingress import (
    TWIML_EMPTY,
    counts,
    create_channel,
    disable,
    message,
    messaging_tenant,
    only_message,
    post_twilio,
    public,
    reply,
)

CUSTOMER = "+14155550199"
OUR_NUMBER = "+14155550100"


def inbound(sid: str, **overrides: str) -> dict[str, str]:
    """An inbound SMS webhook as Twilio posts it."""
    message_sid = "SM" + uuid.uuid4().hex
    params = {
        "ToCountry": "US",
        "SmsMessageSid": message_sid,
        "NumMedia": "0",
        "SmsSid": message_sid,
        "SmsStatus": "received",
        "Body": "Hi, my order #1042 has not arrived",
        "FromCountry": "US",
        "To": OUR_NUMBER,
        "NumSegments": "1",
        "MessageSid": message_sid,
        "AccountSid": sid,
        "From": CUSTOMER,
        "ApiVersion": "2010-04-01",
    }
    return params | overrides


def status(sid: str, message_sid: str, state: str, **extra: str) -> dict[str, str]:
    return {
        "AccountSid": sid,
        "MessageSid": message_sid,
        "SmsSid": message_sid,
        "MessageStatus": state,
        "SmsStatus": state,
        "To": CUSTOMER,
        "From": OUR_NUMBER,
        "ApiVersion": "2010-04-01",
    } | extra


async def sms_channel(client, providers: FakeProviders) -> tuple[dict[str, Any], str, str, str]:
    tenant = await messaging_tenant(client)
    sid, token = providers.twilio_account()
    await create_channel(client, tenant, "sms", "twilio", sid, {"auth_token": token})
    return tenant, sid, token, f"/v1/webhooks/sms/twilio/{sid}"


async def test_a_signed_inbound_sms_opens_a_routed_conversation(app, client, clean_db, wired):
    tenant, sid, token, path = await sms_channel(client, wired)
    params = inbound(sid)

    r = await post_twilio(client, app, path, params, token)

    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/xml") and r.text == TWIML_EMPTY
    msg = await only_message(clean_db)
    assert msg["body"] == "Hi, my order #1042 has not arrived"
    assert msg["provider_message_id"] == params["MessageSid"]
    assert msg["to_address"] == OUR_NUMBER and msg["channel"] == "sms"
    identity = await clean_db.fetchrow("SELECT * FROM customer_identities")
    assert (identity["kind"], identity["value"]) == ("phone", CUSTOMER)
    conv = await clean_db.fetchrow("SELECT * FROM conversations")
    assert conv["customer_id"] == identity["customer_id"] == msg["customer_id"]
    assert conv["state"] == "queued" and str(conv["queue_id"]) == tenant["queue"]["id"]
    contact = await clean_db.fetchrow("SELECT * FROM contacts WHERE id = $1", conv["contact_id"])
    assert contact["channel"] == "sms" and contact["conversation_id"] == conv["id"]
    meters = await clean_db.fetch("SELECT meter, tenant_id FROM usage_events")
    assert [(m["meter"], str(m["tenant_id"])) for m in meters] == [
        ("messages.sms", tenant["tenant"]["id"])
    ]


async def test_a_replayed_request_changes_nothing(app, client, clean_db, wired):
    _, sid, token, path = await sms_channel(client, wired)
    params = inbound(sid)
    first = await post_twilio(client, app, path, params, token)
    assert first.status_code == 200
    before = await counts(clean_db)

    again = await post_twilio(client, app, path, params, token)

    assert again.status_code == 200 and again.text == TWIML_EMPTY
    assert await counts(clean_db) == before
    assert before["messages"] == 1 and before["usage_events"] == 1


async def test_a_forged_signature_is_refused_and_nothing_is_written(app, client, clean_db, wired):
    _, sid, token, path = await sms_channel(client, wired)
    before = await counts(clean_db)

    wrong_token = await post_twilio(client, app, path, inbound(sid), "not-the-auth-token")
    params = inbound(sid)
    tampered = await client.post(
        path,
        content=f"MessageSid={params['MessageSid']}&AccountSid={sid}&From=%2B1&Body=x".encode(),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl",
        },
    )
    unsigned = await client.post(
        path, data=inbound(sid), headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    # Signed over the URL the client reached (its Host), not the public one Twilio knows.
    host_url = await post_twilio(
        client, app, path, inbound(sid), token, signed_url=f"http://testserver{path}"
    )

    for r in (wrong_token, tampered, unsigned, host_url):
        assert r.status_code == 403, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["code"] == "signature-invalid"
        assert token not in r.text
    assert await counts(clean_db) == before


async def test_unknown_account_and_disabled_channel_answer_the_same_404(
    app, client, clean_db, wired
):
    tenant, sid, token, path = await sms_channel(client, wired)
    other_sid, other_token = wired.twilio_account()
    unknown = await post_twilio(
        client, app, f"/v1/webhooks/sms/twilio/{other_sid}", inbound(other_sid), other_token
    )
    # A WhatsApp webhook for the account of an SMS channel: no WhatsApp channel holds it.
    wrong_type = await post_twilio(
        client, app, f"/v1/webhooks/whatsapp/twilio/{sid}", inbound(sid), token
    )
    channel_id = (await clean_db.fetchval("SELECT id FROM channels WHERE type = 'sms'")).hex
    await disable(client, tenant, str(uuid.UUID(channel_id)))
    disabled = await post_twilio(client, app, path, inbound(sid), token)

    bodies = []
    for r in (unknown, wrong_type, disabled):
        assert r.status_code == 404, r.text
        body = r.json()
        bodies.append((body["code"], body["detail"]))
    assert len(set(bodies)) == 1 and bodies[0][0] == "webhook-not-found"
    assert await clean_db.fetchval("SELECT count(*) FROM messages") == 0


async def test_a_malformed_body_is_a_400_problem(app, client, clean_db, wired):
    _, sid, token, path = await sms_channel(client, wired)
    params = inbound(sid, NumMedia="3")  # says 3 files and names none

    r = await post_twilio(client, app, path, params, token)

    assert r.status_code == 400
    assert r.json()["code"] == "malformed-webhook" and r.json()["field"] == "body"
    assert await clean_db.fetchval("SELECT count(*) FROM messages") == 0


async def test_status_callbacks_move_the_status_forward_only(app, client, clean_db, wired):
    tenant, sid, token, path = await sms_channel(client, wired)
    assert (await post_twilio(client, app, path, inbound(sid), token)).status_code == 200
    conv_id = await clean_db.fetchval("SELECT id FROM conversations")
    sent = await reply(app, tenant, conv_id, "Sorry about that, it ships today.")
    row = await message(clean_db, sent.id)
    assert row["status"] == "sent" and row["provider_message_id"].startswith("SM")
    provider_id = row["provider_message_id"]

    for state in ("delivered", "sent", "queued"):  # late and unknown ones after delivered
        r = await post_twilio(client, app, path, status(sid, provider_id, state), token)
        assert r.status_code == 200 and r.text == TWIML_EMPTY
    row = await message(clean_db, sent.id)
    assert row["status"] == "delivered" and row["delivered_at"] is not None
    # A failure reported after delivery does not undo it either.
    late_failure = status(sid, provider_id, "undelivered", ErrorCode="30003")
    assert (await post_twilio(client, app, path, late_failure, token)).status_code == 200
    assert (await message(clean_db, sent.id))["status"] == "delivered"
    events = await clean_db.fetch(
        "SELECT payload FROM conversation_events WHERE topic = 'message.status' "
        "AND conversation_id = $1 ORDER BY id",
        conv_id,
    )
    assert [json.loads(e["payload"])["status"] for e in events] == ["sent", "delivered"]


async def test_a_failure_receipt_records_twilios_reason(app, client, clean_db, wired):
    tenant, sid, token, path = await sms_channel(client, wired)
    await post_twilio(client, app, path, inbound(sid), token)
    conv_id = await clean_db.fetchval("SELECT id FROM conversations")
    sent = await reply(app, tenant, conv_id, "Hello?")
    provider_id = (await message(clean_db, sent.id))["provider_message_id"]

    failed = status(
        sid, provider_id, "undelivered", ErrorCode="30005", ErrorMessage="Unknown destination"
    )
    assert (await post_twilio(client, app, path, failed, token)).status_code == 200

    row = await message(clean_db, sent.id)
    assert row["status"] == "failed"
    assert row["error"] == "Twilio undelivered, error 30005: Unknown destination"
    # The same receipt again: taken once.
    receipts = await clean_db.fetchval("SELECT count(*) FROM webhook_receipts")
    assert (await post_twilio(client, app, path, failed, token)).status_code == 200
    assert await clean_db.fetchval("SELECT count(*) FROM webhook_receipts") == receipts


async def test_a_receipt_for_a_message_we_do_not_know_changes_nothing(app, client, clean_db, wired):
    _, sid, token, path = await sms_channel(client, wired)
    r = await post_twilio(client, app, path, status(sid, "SM" + "0" * 32, "delivered"), token)
    assert r.status_code == 200
    # Not burnt: the provider's retry can still apply it once the send is recorded.
    assert await clean_db.fetchval("SELECT count(*) FROM webhook_receipts") == 0


async def test_inbound_media_is_stored_and_a_refused_file_becomes_a_note(
    app, client, clean_db, wired
):
    _, sid, token, path = await sms_channel(client, wired)
    photo = b"\xff\xd8\xff\xe0" + b"jpeg bytes" * 100
    photo_url = wired.twilio_media(sid, photo, "image/jpeg")
    program_url = wired.twilio_media(sid, b"MZ\x90\x00", "application/x-msdownload")
    params = inbound(
        sid,
        Body="Here is the damaged box",
        NumMedia="2",
        MediaUrl0=photo_url,
        MediaContentType0="image/jpeg",
        MediaUrl1=program_url,
        MediaContentType1="application/x-msdownload",
    )

    r = await post_twilio(client, app, path, params, token)

    assert r.status_code == 200, r.text
    msg = await only_message(clean_db)
    assert msg["body"] == (
        "Here is the damaged box\n"
        "[attachment not accepted: application/x-msdownload files are not accepted]"
    )
    [stored] = await clean_db.fetch("SELECT * FROM attachments")
    assert stored["message_id"] == msg["id"] and stored["content_type"] == "image/jpeg"
    assert stored["size_bytes"] == len(photo) and stored["filename"].endswith(".jpg")
    assert await app.state.object_store.get(stored["object_key"]) == photo
    # Fetched with the account's credentials, through Twilio's redirect.
    fetched = wired.made(r"/2010-04-01/Accounts/.*/Media/.*")
    assert fetched and all(f.headers["authorization"].startswith("Basic ") for f in fetched)
    assert wired.made(r"/cdn/.*")


async def test_media_outside_the_accounts_api_is_not_fetched(app, client, clean_db, wired):
    _, sid, token, path = await sms_channel(client, wired)
    # Signed with the tenant's own token, but pointing elsewhere: never fetched.
    elsewhere = "http://169.254.169.254/latest/meta-data/"
    other_account = wired.twilio_media("AC" + "1" * 32, b"x", "image/png")
    params = inbound(sid, NumMedia="2", MediaUrl0=elsewhere, MediaUrl1=other_account, Body="look")

    assert (await post_twilio(client, app, path, params, token)).status_code == 200

    msg = await only_message(clean_db)
    assert msg["body"].count("[attachment not accepted: the media URL is not at the") == 2
    assert not wired.made(r"/2010-04-01/Accounts/.*/Media/.*")
    assert await clean_db.fetchval("SELECT count(*) FROM attachments") == 0


async def test_a_file_over_the_size_limit_is_refused(app, client, clean_db, wired):
    _, sid, token, path = await sms_channel(client, wired)
    limit = app.state.settings.attachment_max_bytes
    big = wired.twilio_media(sid, b"\x89PNG" + b"0" * limit, "image/png")
    params = inbound(sid, NumMedia="1", MediaUrl0=big, MediaContentType0="image/png", Body="")

    assert (await post_twilio(client, app, path, params, token)).status_code == 200

    msg = await only_message(clean_db)
    assert msg["body"] == f"[attachment not accepted: larger than {limit} bytes]"
    assert await clean_db.fetchval("SELECT count(*) FROM attachments") == 0


async def test_whatsapp_through_twilio(app, client, clean_db, wired):
    tenant = await messaging_tenant(client)
    sid, token = wired.twilio_account()
    await create_channel(client, tenant, "whatsapp", "twilio", sid, {"auth_token": token})
    path = f"/v1/webhooks/whatsapp/twilio/{sid}"
    params = inbound(
        sid,
        From="whatsapp:+4915112345678",
        To="whatsapp:+14155238886",
        WaId="4915112345678",
        ProfileName="Jonas",
    )

    assert (await post_twilio(client, app, path, params, token)).status_code == 200

    identity = await clean_db.fetchrow("SELECT * FROM customer_identities")
    assert (identity["kind"], identity["value"]) == ("whatsapp", "+4915112345678")
    name = await clean_db.fetchval("SELECT display_name FROM customers")
    assert name == "Jonas"
    assert (await only_message(clean_db))["to_address"] == "+14155238886"
    meters = await clean_db.fetch("SELECT meter FROM usage_events")
    assert [m["meter"] for m in meters] == ["messages.whatsapp"]
    # The customer's conversation on the contact's messaging queue.
    assert await clean_db.fetchval("SELECT channel FROM contacts") == "messaging"
    # The status callback URL Twilio will be given for this channel is this webhook.
    assert public(app, path).endswith(f"/v1/webhooks/whatsapp/twilio/{sid}")
