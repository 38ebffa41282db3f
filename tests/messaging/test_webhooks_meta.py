"""Meta webhooks end to end (WhatsApp Cloud API, Messenger): the subscription handshake,
signed posts that may batch several accounts of one app, media fetched through the Graph
API, status and read receipts, and replies in the Graph API's wire format."""

from __future__ import annotations

import secrets
import time
import uuid
from typing import Any

from tests.messaging.fake_providers import FakeProviders
from tests.messaging.ingress import (
    counts,
    create_channel,
    message,
    messaging_tenant,
    only_message,
    post_meta,
    reply,
)

CUSTOMER_WA = "16505551234"
PSID = "6254819204727166"


def now() -> int:
    return int(time.time())


def wa_change(phone_id: str, **value: Any) -> dict[str, Any]:
    return {
        "field": "messages",
        "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": phone_id},
        }
        | value,
    }


def wa_payload(*changes: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": list(changes)}],
    }


def wa_text(phone_id: str, text: str = "Does it come in another color?") -> dict[str, Any]:
    return wa_change(
        phone_id,
        contacts=[{"profile": {"name": "Sheena Nelson"}, "wa_id": CUSTOMER_WA}],
        messages=[
            {
                "from": CUSTOMER_WA,
                "id": "wamid.HBgL" + secrets.token_urlsafe(24),
                "timestamp": str(now()),
                "type": "text",
                "text": {"body": text},
            }
        ],
    )


def wa_status(phone_id: str, wamid: str, state: str) -> dict[str, Any]:
    return wa_change(
        phone_id,
        statuses=[
            {
                "id": wamid,
                "status": state,
                "timestamp": str(now()),
                "recipient_id": CUSTOMER_WA,
            }
        ],
    )


def page_payload(page_id: str, *events: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "page",
        "entry": [{"id": page_id, "time": now() * 1000, "messaging": list(events)}],
    }


def page_event(page_id: str, **body: Any) -> dict[str, Any]:
    return {
        "sender": {"id": PSID},
        "recipient": {"id": page_id},
        "timestamp": now() * 1000,
    } | body


async def whatsapp_channel(
    client, providers: FakeProviders, tenant: dict[str, Any] | None = None, secret: str = ""
) -> tuple[dict[str, Any], str, str]:
    tenant = tenant or await messaging_tenant(client)
    phone_id, token = providers.whatsapp_number()
    app_secret = secret or secrets.token_hex(16)
    channel = await create_channel(
        client,
        tenant,
        "whatsapp",
        "meta",
        phone_id,
        {"access_token": token, "app_secret": app_secret},
    )
    tenant.setdefault("channels", []).append(channel)
    return tenant, phone_id, app_secret


# -- handshake --------------------------------------------------------------------------------


async def test_the_subscription_handshake_checks_the_verify_token(client, clean_db, wired):
    tenant = await messaging_tenant(client)
    phone_id, token = wired.whatsapp_number()
    channel = await create_channel(
        client, tenant, "whatsapp", "meta", phone_id, {"access_token": token, "app_secret": "s"}
    )
    path = f"/v1/webhooks/whatsapp/meta/{phone_id}"
    query = {"hub.mode": "subscribe", "hub.challenge": "1158201444"}

    ok = await client.get(path, params=query | {"hub.verify_token": channel["webhook_secret"]})
    wrong = await client.get(path, params=query | {"hub.verify_token": "guess"})
    unknown = await client.get(
        "/v1/webhooks/whatsapp/meta/999999999", params=query | {"hub.verify_token": "x"}
    )

    assert ok.status_code == 200 and ok.text == "1158201444"
    assert ok.headers["content-type"].startswith("text/plain")
    assert wrong.status_code == 403 and wrong.json()["code"] == "signature-invalid"
    assert channel["webhook_secret"] not in wrong.text
    assert unknown.status_code == 404


# -- WhatsApp ---------------------------------------------------------------------------------


async def test_a_signed_whatsapp_message_opens_a_routed_conversation(client, clean_db, wired):
    tenant, phone_id, app_secret = await whatsapp_channel(client, wired)

    r = await post_meta(client, "whatsapp", wa_payload(wa_text(phone_id)), app_secret)

    assert r.status_code == 200 and r.text == "EVENT_RECEIVED"
    msg = await only_message(clean_db)
    assert msg["body"] == "Does it come in another color?" and msg["channel"] == "whatsapp"
    assert msg["to_address"] == phone_id
    identity = await clean_db.fetchrow("SELECT * FROM customer_identities")
    assert (identity["kind"], identity["value"]) == ("whatsapp", "+16505551234")
    assert await clean_db.fetchval("SELECT display_name FROM customers") == "Sheena Nelson"
    conv = await clean_db.fetchrow("SELECT * FROM conversations")
    assert conv["state"] == "queued"
    assert await clean_db.fetchval("SELECT channel FROM contacts") == "messaging"
    meters = await clean_db.fetch("SELECT meter, tenant_id FROM usage_events")
    assert [(m["meter"], str(m["tenant_id"])) for m in meters] == [
        ("messages.whatsapp", tenant["tenant"]["id"])
    ]


async def test_one_post_for_several_numbers_reaches_each_channel(client, clean_db, wired):
    tenant, first, app_secret = await whatsapp_channel(client, wired)
    _, second, _ = await whatsapp_channel(client, wired, tenant, app_secret)
    payload = wa_payload(wa_text(first, "to the first"), wa_text(second, "to the second"))
    payload["entry"].append(
        {"id": "1", "changes": [wa_text("123456789012345", "to nobody of ours")]}
    )

    r = await post_meta(client, "whatsapp", payload, app_secret, path="/v1/webhooks/whatsapp/meta")

    assert r.status_code == 200
    rows = await clean_db.fetch(
        "SELECT m.body, c.config->>'provider_account_id' AS account FROM messages m "
        "JOIN channels c ON c.id = m.channel_id ORDER BY m.body"
    )
    assert [(row["body"], row["account"]) for row in rows] == [
        ("to the first", first),
        ("to the second", second),
    ]


async def test_a_forged_post_writes_nothing_even_for_the_channel_it_would_verify_for(
    client, clean_db, wired
):
    tenant, first, app_secret = await whatsapp_channel(client, wired)
    _, second, _ = await whatsapp_channel(client, wired, tenant, "another-apps-secret")
    before = await counts(clean_db)
    both = wa_payload(wa_text(first), wa_text(second))

    forged = await post_meta(client, "whatsapp", wa_payload(wa_text(first)), "guessed")
    mixed = await post_meta(client, "whatsapp", both, app_secret)
    unsigned = await client.post(
        "/v1/webhooks/whatsapp/meta",
        json=wa_payload(wa_text(first)),
    )

    for r in (forged, mixed, unsigned):
        assert r.status_code == 403 and r.json()["code"] == "signature-invalid"
    assert await counts(clean_db) == before


async def test_a_post_for_no_channel_of_ours_is_404_and_junk_is_400(client, clean_db, wired):
    await whatsapp_channel(client, wired)
    unknown = await post_meta(client, "whatsapp", wa_payload(wa_text("123456789")), "x")
    junk = await client.post(
        "/v1/webhooks/whatsapp/meta",
        content=b"not json",
        headers={"X-Hub-Signature-256": "sha256=00"},
    )
    assert unknown.status_code == 404 and unknown.json()["code"] == "webhook-not-found"
    assert junk.status_code == 400 and junk.json()["code"] == "malformed-webhook"


async def test_a_replayed_post_changes_nothing(client, clean_db, wired):
    _, phone_id, app_secret = await whatsapp_channel(client, wired)
    payload = wa_payload(wa_text(phone_id))
    assert (await post_meta(client, "whatsapp", payload, app_secret)).status_code == 200
    before = await counts(clean_db)

    again = await post_meta(client, "whatsapp", payload, app_secret)

    assert again.status_code == 200 and again.text == "EVENT_RECEIVED"
    assert await counts(clean_db) == before


async def test_whatsapp_media_is_fetched_through_the_graph_api(app, client, clean_db, wired):
    _, phone_id, app_secret = await whatsapp_channel(client, wired)
    photo = b"\x89PNG\r\n\x1a\n" + b"png" * 300
    image_id = wired.whatsapp_media(photo, "image/png")
    voice_id = wired.whatsapp_media(b"OggS" + b"\x00" * 50, "audio/ogg; codecs=opus")

    def media(kind: str, media_id: str, mime: str, **extra: Any) -> dict[str, Any]:
        return {
            "from": CUSTOMER_WA,
            "id": "wamid." + secrets.token_urlsafe(20),
            "timestamp": str(now()),
            "type": kind,
            kind: {"id": media_id, "mime_type": mime, "sha256": "x"} | extra,
        }

    change = wa_change(
        phone_id,
        messages=[
            media("image", image_id, "image/png", caption="The scratch"),
            media("audio", voice_id, "audio/ogg; codecs=opus", voice=True),
        ],
    )
    r = await post_meta(client, "whatsapp", wa_payload(change), app_secret)

    assert r.status_code == 200
    rows = await clean_db.fetch("SELECT * FROM messages ORDER BY created_at")
    assert [row["body"] for row in rows] == [
        "The scratch",
        "[attachment not accepted: audio/ogg files are not accepted]",
    ]
    [stored] = await clean_db.fetch("SELECT * FROM attachments")
    assert stored["message_id"] == rows[0]["id"] and stored["content_type"] == "image/png"
    assert await app.state.object_store.get(stored["object_key"]) == photo
    lookups = wired.made(r"/v[0-9.]+/[0-9]+")
    assert {r.headers["authorization"][:7] for r in lookups} == {"Bearer "}


async def test_whatsapp_reply_and_its_statuses(app, client, clean_db, wired):
    tenant, phone_id, app_secret = await whatsapp_channel(client, wired)
    await post_meta(client, "whatsapp", wa_payload(wa_text(phone_id)), app_secret)
    conv_id = await clean_db.fetchval("SELECT id FROM conversations")

    sent = await reply(app, tenant, conv_id, "Yes: blue and green.")

    [call] = wired.made(rf"/v[0-9.]+/{phone_id}/messages")
    assert call.json == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": CUSTOMER_WA,
        "type": "text",
        "text": {"body": "Yes: blue and green.", "preview_url": False},
    }
    row = await message(clean_db, sent.id)
    assert row["status"] == "sent" and row["provider_message_id"].startswith("wamid.")
    wamid = row["provider_message_id"]
    for state in ("read", "delivered", "sent"):  # Meta does not promise the order
        r = await post_meta(
            client, "whatsapp", wa_payload(wa_status(phone_id, wamid, state)), app_secret
        )
        assert r.status_code == 200
    row = await message(clean_db, sent.id)
    assert row["status"] == "read" and row["read_at"] is not None


# -- Messenger --------------------------------------------------------------------------------


async def messenger_channel(client, providers: FakeProviders) -> tuple[dict[str, Any], str, str]:
    tenant = await messaging_tenant(client)
    page_id, token = providers.messenger_page()
    app_secret = secrets.token_hex(16)
    await create_channel(
        client,
        tenant,
        "messenger",
        "meta",
        page_id,
        {"page_access_token": token, "app_secret": app_secret},
    )
    return tenant, page_id, app_secret


async def test_a_messenger_message_with_a_photo(app, client, clean_db, wired):
    _, page_id, app_secret = await messenger_channel(client, wired)
    photo = b"\xff\xd8\xff" + b"jpg" * 50
    url = wired.messenger_media(photo, "image/jpeg")
    event = page_event(
        page_id,
        message={
            "mid": "m_" + secrets.token_urlsafe(60),
            "text": "This arrived broken",
            "attachments": [{"type": "image", "payload": {"url": url}}],
        },
    )

    r = await post_meta(client, "messenger", page_payload(page_id, event), app_secret)

    assert r.status_code == 200 and r.text == "EVENT_RECEIVED"
    msg = await only_message(clean_db)
    assert msg["body"] == "This arrived broken" and msg["channel"] == "messenger"
    identity = await clean_db.fetchrow("SELECT * FROM customer_identities")
    assert (identity["kind"], identity["value"]) == ("messenger", PSID)
    [stored] = await clean_db.fetch("SELECT * FROM attachments")
    assert await app.state.object_store.get(stored["object_key"]) == photo
    assert [m["meter"] for m in await clean_db.fetch("SELECT meter FROM usage_events")] == [
        "messages.messenger"
    ]
    # Its long mid fits the receipt key (hashed).
    assert await clean_db.fetchval("SELECT count(*) FROM webhook_receipts") == 1


async def test_a_messenger_attachment_off_metas_hosts_is_not_fetched(client, clean_db, wired):
    _, page_id, app_secret = await messenger_channel(client, wired)
    event = page_event(
        page_id,
        message={
            "mid": "m_" + secrets.token_urlsafe(20),
            "attachments": [{"type": "file", "payload": {"url": "https://evil.example/x.pdf"}}],
        },
    )

    assert (
        await post_meta(client, "messenger", page_payload(page_id, event), app_secret)
    ).status_code == 200

    msg = await only_message(clean_db)
    assert msg["body"] == "[attachment not accepted: the attachment URL is not on Meta's hosts]"


async def test_messenger_replies_and_read_watermarks(app, client, clean_db, wired):
    tenant, page_id, app_secret = await messenger_channel(client, wired)
    hello = page_event(page_id, message={"mid": "m_" + uuid.uuid4().hex, "text": "Hello?"})
    await post_meta(client, "messenger", page_payload(page_id, hello), app_secret)
    conv_id = await clean_db.fetchval("SELECT id FROM conversations")

    first = await reply(app, tenant, conv_id, "Hi! How can we help?")
    second = await reply(app, tenant, conv_id, "Are you there?")

    calls = wired.made(r"/v[0-9.]+/me/messages")
    assert [c.json for c in calls] == [
        {
            "recipient": {"id": PSID},
            "messaging_type": "RESPONSE",
            "message": {"text": "Hi! How can we help?"},
        },
        {
            "recipient": {"id": PSID},
            "messaging_type": "RESPONSE",
            "message": {"text": "Are you there?"},
        },
    ]
    assert {(await message(clean_db, m.id))["status"] for m in (first, second)} == {"sent"}
    # Read up to a watermark after both: both are read, and the receipt is taken once.
    watermark = (now() + 5) * 1000
    read = page_event(page_id, read={"watermark": watermark})
    r = await post_meta(client, "messenger", page_payload(page_id, read), app_secret)
    assert r.status_code == 200
    assert {(await message(clean_db, m.id))["status"] for m in (first, second)} == {"read"}
    receipts = await clean_db.fetchval("SELECT count(*) FROM webhook_receipts")
    await post_meta(client, "messenger", page_payload(page_id, read), app_secret)
    assert await clean_db.fetchval("SELECT count(*) FROM webhook_receipts") == receipts
    # A delivery watermark after the read changes nothing.
    delivered = page_event(page_id, delivery={"watermark": watermark})
    await post_meta(client, "messenger", page_payload(page_id, delivered), app_secret)
    assert {(await message(clean_db, m.id))["status"] for m in (first, second)} == {"read"}
