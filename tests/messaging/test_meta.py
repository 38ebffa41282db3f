"""Meta (WhatsApp Cloud API, Messenger): X-Hub-Signature-256, the subscription
handshake, webhook parsing, and sends against a local server speaking the Graph API."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from datetime import timedelta
from typing import Any

import httpx
import pytest

from app.messaging.providers.base import (
    DeliveryReceipt,
    InboundMessage,
    MediaRef,
    Outgoing,
    ProviderError,
    WebhookRefused,
    from_unix,
    is_stale,
)
from app.messaging.providers.meta import MetaAdapter
from tests.messaging.fake_providers import FakeProviders
from tests.messaging.helpers import MAX_AGE, check, now, request

URL = "https://hooks.switchboard.example/v1/webhooks/meta"
APP_SECRET = "6f2d3c1b0a99887766554433221100ff"
PHONE_ID = "106540352242922"
PAGE_ID = "104455667788990"
WHATSAPP = MetaAdapter("whatsapp")
MESSENGER = MetaAdapter("messenger")


def hub_signature(body: bytes, secret: str = APP_SECRET) -> dict[str, str]:
    return {
        "X-Hub-Signature-256": "sha256="
        + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    }


def whatsapp_payload(ts: int) -> dict[str, Any]:
    """A Cloud API message webhook, as Meta posts it."""
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550783881",
                                "phone_number_id": PHONE_ID,
                            },
                            "contacts": [
                                {"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}
                            ],
                            "messages": [
                                {
                                    "from": "16505551234",
                                    "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=",
                                    "timestamp": str(ts),
                                    "type": "text",
                                    "text": {"body": "Does it come in another color?"},
                                }
                            ],
                        },
                        "field": "messages",
                    }
                ],
            }
        ],
    }


def messenger_payload(ts_ms: int, *events: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "page",
        "entry": [{"id": PAGE_ID, "time": ts_ms, "messaging": list(events)}],
    }


def parse(adapter: MetaAdapter, payload: dict[str, Any], account: str) -> list[Any]:
    return adapter.parse(
        request(URL, json.dumps(payload).encode()),
        account_id=account,
        credentials={},
        received_at=now(),
    )


def verify(
    adapter: MetaAdapter, body: bytes, headers: dict[str, str], secret: str = APP_SECRET
) -> None:
    adapter.verify(request(URL, body, headers), check({"app_secret": secret}))


# -- signatures and handshake ----------------------------------------------------------------


def test_valid_signature_is_accepted() -> None:
    body = json.dumps(whatsapp_payload(1749416383)).encode()
    verify(WHATSAPP, body, hub_signature(body))
    headers = hub_signature(body)
    headers["X-Hub-Signature-256"] = (
        headers["X-Hub-Signature-256"].upper().replace("SHA256=", "sha256=")
    )
    verify(WHATSAPP, body, headers)  # hex digits in either case


def test_tampered_wrong_secret_and_missing_are_refused() -> None:
    body = json.dumps(whatsapp_payload(1749416383)).encode()
    headers = hub_signature(body)
    cases = [
        (body.replace(b"another color", b"another colour"), headers, APP_SECRET),
        (body + b" ", headers, APP_SECRET),
        (body, hub_signature(body, "a-different-app-secret"), APP_SECRET),
        (body, headers, "a-different-app-secret"),
        (
            body,
            {"X-Hub-Signature-256": headers["X-Hub-Signature-256"][7:]},
            APP_SECRET,
        ),  # no "sha256="
        (
            body,
            {"X-Hub-Signature": "sha1=" + hashlib.sha1(body, usedforsecurity=False).hexdigest()},
            APP_SECRET,
        ),
        (body, {}, APP_SECRET),
    ]
    for sent_body, sent_headers, secret in cases:
        with pytest.raises(WebhookRefused) as refused:
            verify(WHATSAPP, sent_body, sent_headers, secret)
        assert refused.value.code == "signature-invalid"
        assert APP_SECRET not in refused.value.reason


def test_stale_messages_are_judged_on_the_signed_timestamp() -> None:
    at = now()
    [fresh] = parse(WHATSAPP, whatsapp_payload(int(at.timestamp()) - 10), PHONE_ID)
    assert not is_stale(fresh.sent_at, at, MAX_AGE)
    [old] = parse(WHATSAPP, whatsapp_payload(int((at - timedelta(hours=1)).timestamp())), PHONE_ID)
    assert is_stale(old.sent_at, at, MAX_AGE)
    [future] = parse(
        WHATSAPP, whatsapp_payload(int((at + timedelta(hours=1)).timestamp())), PHONE_ID
    )
    assert is_stale(future.sent_at, at, MAX_AGE)


VERIFY_TOKEN = "whsec_verify"


def handshake(query: str, verify_token: str | None = VERIFY_TOKEN) -> str:
    return WHATSAPP.handshake(request(f"{URL}?{query}", method="GET"), check({}, verify_token))


def test_subscription_handshake() -> None:
    ok = "hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=whsec_verify"
    assert handshake(ok) == "1158201444"
    for query, code in [
        ("hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=guess", "signature-invalid"),
        ("hub.mode=subscribe&hub.challenge=1158201444", "signature-invalid"),
        (
            "hub.mode=unsubscribe&hub.challenge=1158201444&hub.verify_token=whsec_verify",
            "malformed",
        ),
        (
            "hub.mode=subscribe&hub.challenge=%3Cscript%3E&hub.verify_token=whsec_verify",
            "malformed",
        ),
        ("hub.mode=subscribe&hub.verify_token=whsec_verify", "malformed"),
    ]:
        with pytest.raises(WebhookRefused) as refused:
            handshake(query)
        assert refused.value.code == code, query
    with pytest.raises(WebhookRefused):
        handshake(ok, verify_token=None)


# -- WhatsApp payloads -----------------------------------------------------------------------


def test_whatsapp_text_message() -> None:
    payload = whatsapp_payload(1749416383)
    assert WHATSAPP.accounts(request(URL, json.dumps(payload).encode())) == [PHONE_ID]
    [message] = parse(WHATSAPP, payload, PHONE_ID)
    assert message == InboundMessage(
        provider_message_id="wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=",
        sender_id="16505551234",
        account_id=PHONE_ID,
        text="Does it come in another color?",
        sent_at=from_unix(1749416383),
        media=[],
        display_name="Sheena Nelson",
    )


def test_whatsapp_media_and_other_message_types() -> None:
    payload = whatsapp_payload(1749416383)
    value = payload["entry"][0]["changes"][0]["value"]
    base = value["messages"][0]
    value["messages"] = [
        {**base, "id": "wamid.1", "type": "image",
         "image": {"caption": "the broken part", "mime_type": "image/jpeg",
                   "sha256": "YIDF0HXXo2+5dzr2ht8VGSzv6qCMJw2E0GA2J7/dhbY=", "id": "1003383421387256"}},
        {**base, "id": "wamid.2", "type": "document",
         "document": {"filename": "invoice-1042.pdf", "mime_type": "application/pdf", "id": "2209403856112"}},
        {**base, "id": "wamid.3", "type": "interactive",
         "interactive": {"type": "button_reply", "button_reply": {"id": "yes", "title": "Yes, please"}}},
        {**base, "id": "wamid.4", "type": "location",
         "location": {"latitude": 38.9, "longitude": -77.03, "name": "Office"}},
        {**base, "id": "wamid.5", "type": "reaction", "reaction": {"message_id": "wamid.x", "emoji": ""}},
        {**base, "id": "wamid.6", "type": "unsupported", "errors": [{"code": 131051, "title": "Message type unknown"}]},
    ]  # fmt: skip
    image, document, button, location, unsupported = parse(WHATSAPP, payload, PHONE_ID)
    assert image.text == "the broken part"
    assert image.media == [MediaRef(media_id="1003383421387256", content_type="image/jpeg")]
    assert document.media == [
        MediaRef(
            media_id="2209403856112", content_type="application/pdf", filename="invoice-1042.pdf"
        )
    ]
    assert button.text == "Yes, please"
    assert location.text == "Location: 38.9, -77.03 (Office)"
    assert unsupported.text == "[WhatsApp unsupported message]"


def test_whatsapp_statuses() -> None:
    payload = whatsapp_payload(1749416383)
    value = payload["entry"][0]["changes"][0]["value"]
    del value["messages"], value["contacts"]
    value["statuses"] = [
        {
            "id": "wamid.HBgLMTY1MDUwNzY1MjAVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA",
            "status": "delivered",
            "timestamp": "1749416400",
            "recipient_id": "16505551234",
            "conversation": {"id": "CONVERSATION_ID", "origin": {"type": "service"}},
            "pricing": {"billable": True, "pricing_model": "CBP", "category": "service"},
        },
        {
            "id": "wamid.failed",
            "status": "failed",
            "timestamp": "1749416401",
            "recipient_id": "16505551234",
            "errors": [
                {
                    "code": 131047,
                    "title": "Re-engagement message",
                    "message": "Re-engagement message",
                    "error_data": {
                        "details": "Message failed to send because more than 24 hours have passed"
                    },
                }
            ],
        },
    ]
    delivered, failed = parse(WHATSAPP, payload, PHONE_ID)
    assert delivered == DeliveryReceipt(
        provider_message_id="wamid.HBgLMTY1MDUwNzY1MjAVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA",
        status="delivered",
        at=from_unix(1749416400),
        account_id=PHONE_ID,
        recipient_id="16505551234",
    )
    assert failed.status == "failed"
    assert failed.error == (
        "Re-engagement message (131047): Message failed to send because more than 24 hours have passed"
    )


def test_whatsapp_batch_keeps_the_asked_account() -> None:
    payload = whatsapp_payload(1749416383)
    other = copy.deepcopy(payload["entry"][0])
    other["changes"][0]["value"]["metadata"]["phone_number_id"] = "999000111222333"
    other["changes"][0]["value"]["messages"][0]["id"] = "wamid.other"
    payload["entry"].append(other)
    assert WHATSAPP.accounts(request(URL, json.dumps(payload).encode())) == [
        PHONE_ID,
        "999000111222333",
    ]
    assert [m.provider_message_id for m in parse(WHATSAPP, payload, "999000111222333")] == [
        "wamid.other"
    ]
    assert len(parse(WHATSAPP, payload, PHONE_ID)) == 1
    assert parse(WHATSAPP, payload, "123") == []


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda p: p.update(object="page"), "object"),
        (lambda p: p.pop("entry"), "entry"),
        (
            lambda p: p["entry"][0]["changes"][0]["value"]["messages"][0].update(
                timestamp="yesterday"
            ),
            "timestamp",
        ),
        (
            lambda p: p["entry"][0]["changes"][0]["value"]["messages"][0].update(
                timestamp="99999999999999"
            ),
            "timestamp",
        ),
        (lambda p: p["entry"][0]["changes"][0]["value"]["messages"][0].pop("from"), "from"),
    ],
)
def test_malformed_whatsapp_payloads(mutate: Any, reason: str) -> None:
    payload = whatsapp_payload(1749416383)
    mutate(payload)
    with pytest.raises(WebhookRefused) as refused:
        parse(WHATSAPP, payload, PHONE_ID)
    assert refused.value.code == "malformed"
    assert reason in refused.value.reason


def test_body_that_is_not_json_is_malformed() -> None:
    for body in (b"<xml/>", b"[1, 2]", b"\xff\xfe"):
        with pytest.raises(WebhookRefused) as refused:
            WHATSAPP.parse(
                request(URL, body), account_id=PHONE_ID, credentials={}, received_at=now()
            )
        assert refused.value.code == "malformed"
        assert WHATSAPP.accounts(request(URL, body)) == []


# -- Messenger payloads ----------------------------------------------------------------------


def test_messenger_messages_echoes_and_postbacks() -> None:
    ts = 1749416383123
    user, page = {"id": "6789012345678901"}, {"id": PAGE_ID}
    payload = messenger_payload(
        ts,
        {"sender": user, "recipient": page, "timestamp": ts,
         "message": {"mid": "m_AG5Hz2Uq7tuwNEhXfYYKj8mJEM_QPpz5jdCK48PnKAjSdjfipqxqMvK8ma6AC8fplwlqLP_5cgXIbu7I3rBN0P",
                     "text": "hello, world!", "quick_reply": {"payload": "DEVELOPER_DEFINED_PAYLOAD"}}},
        {"sender": user, "recipient": page, "timestamp": ts + 1,
         "message": {"mid": "m_photo", "attachments": [
             {"type": "image", "payload": {"url": "https://scontent.xx.fbcdn.net/v/t1.15752-9/photo.jpg"}}]}},
        {"sender": page, "recipient": user, "timestamp": ts + 2,
         "message": {"mid": "m_echo", "is_echo": True, "app_id": 1517776481860111, "text": "our reply"}},
        {"sender": user, "recipient": page, "timestamp": ts + 3,
         "postback": {"mid": "m_postback", "title": "Track my order", "payload": "TRACK"}},
        {"sender": user, "recipient": page, "timestamp": ts + 4,
         "reaction": {"mid": "m_x", "action": "react", "emoji": "👍", "reaction": "like"}},
    )  # fmt: skip
    assert MESSENGER.accounts(request(URL, json.dumps(payload).encode())) == [PAGE_ID]
    text, photo, postback = parse(MESSENGER, payload, PAGE_ID)
    assert isinstance(text, InboundMessage)
    assert (text.sender_id, text.account_id, text.text) == (
        "6789012345678901",
        PAGE_ID,
        "hello, world!",
    )
    assert text.sent_at == from_unix(ts / 1000)
    assert photo.media == [MediaRef(url="https://scontent.xx.fbcdn.net/v/t1.15752-9/photo.jpg")]
    assert (postback.provider_message_id, postback.text) == ("m_postback", "Track my order")
    assert parse(MESSENGER, payload, "another-page") == []


def test_messenger_delivery_and_read_receipts() -> None:
    ts = 1749416383123
    user, page = {"id": "6789012345678901"}, {"id": PAGE_ID}
    payload = messenger_payload(
        ts,
        {"sender": user, "recipient": page, "timestamp": ts,
         "delivery": {"mids": ["m_one", "m_two"], "watermark": ts - 5000}},
        {"sender": user, "recipient": page, "timestamp": ts + 10, "read": {"watermark": ts}},
        {"sender": user, "recipient": page, "timestamp": ts + 20, "delivery": {"watermark": ts + 15}},
    )  # fmt: skip
    one, two, read, delivered = parse(MESSENGER, payload, PAGE_ID)
    assert (one.provider_message_id, one.status, two.provider_message_id) == (
        "m_one",
        "delivered",
        "m_two",
    )
    assert one.watermark == from_unix((ts - 5000) / 1000)
    assert read == DeliveryReceipt(
        provider_message_id=None,
        status="read",
        at=from_unix((ts + 10) / 1000),
        account_id=PAGE_ID,
        recipient_id="6789012345678901",
        watermark=from_unix(ts / 1000),
    )
    assert (delivered.provider_message_id, delivered.watermark) == (
        None,
        from_unix((ts + 15) / 1000),
    )


def test_messenger_refuses_a_whatsapp_payload() -> None:
    with pytest.raises(WebhookRefused) as refused:
        parse(MESSENGER, whatsapp_payload(1749416383), PAGE_ID)
    assert refused.value.code == "malformed"


# -- sending ---------------------------------------------------------------------------------


async def send(
    adapter: MetaAdapter, providers: FakeProviders, http: httpx.AsyncClient, account: str,
    credentials: dict[str, str], to: str, text: str = "Thanks, it ships today.",
    media: list[str] | None = None,
) -> Any:  # fmt: skip
    return await adapter.send(
        http,
        Outgoing(
            base_url=f"{providers.url}/v21.0",
            account_id=account,
            credentials=credentials,
            to=to,
            text=text,
            media_urls=media or [],
            status_callback=None,
        ),
    )


async def test_send_whatsapp_text(providers: FakeProviders, http: httpx.AsyncClient) -> None:
    number_id, token = providers.whatsapp_number()
    result = await send(
        WHATSAPP, providers, http, number_id, {"access_token": token}, "+16505551234"
    )
    assert result.provider_message_id.startswith("wamid.")
    assert result.status == "sent"
    [sent] = providers.requests
    assert sent.path == f"/v21.0/{number_id}/messages"
    assert sent.headers["authorization"] == f"Bearer {token}"
    assert sent.json == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "16505551234",
        "type": "text",
        "text": {"body": "Thanks, it ships today.", "preview_url": False},
    }


async def test_send_whatsapp_with_files(providers: FakeProviders, http: httpx.AsyncClient) -> None:
    number_id, token = providers.whatsapp_number()
    result = await send(
        WHATSAPP, providers, http, number_id, {"access_token": token}, "16505551234",
        media=["https://files.example/t/label.png?sig=1", "https://files.example/t/invoice.pdf"],
    )  # fmt: skip
    text, image, document = [r.json for r in providers.requests]
    assert text["type"] == "text"
    assert image["type"] == "image" and image["image"] == {
        "link": "https://files.example/t/label.png?sig=1"
    }
    assert document["document"] == {
        "link": "https://files.example/t/invoice.pdf",
        "filename": "invoice.pdf",
    }
    assert result.provider_message_id  # the text message's


async def test_send_messenger(providers: FakeProviders, http: httpx.AsyncClient) -> None:
    page_id, token = providers.messenger_page()
    result = await send(MESSENGER, providers, http, page_id, {"page_access_token": token}, "6789012345678901",
                        media=["https://files.example/manual.pdf"])  # fmt: skip
    assert result.provider_message_id.startswith("m_")
    text, attachment = providers.requests
    assert text.path == "/v21.0/me/messages"
    assert text.headers["authorization"] == f"Bearer {token}"
    assert text.json == {
        "recipient": {"id": "6789012345678901"},
        "messaging_type": "RESPONSE",
        "message": {"text": "Thanks, it ships today."},
    }
    assert attachment.json["message"] == {
        "attachment": {
            "type": "file",
            "payload": {"url": "https://files.example/manual.pdf", "is_reusable": False},
        }
    }


async def test_send_errors_are_mapped(providers: FakeProviders, http: httpx.AsyncClient) -> None:
    number_id, token = providers.whatsapp_number()
    creds = {"access_token": token}
    with pytest.raises(ProviderError) as bad_token:
        await send(
            WHATSAPP, providers, http, number_id, {"access_token": "EAAGexpired"}, "16505551234"
        )
    assert not bad_token.value.retryable
    assert "HTTP 401, Graph error 190" in bad_token.value.detail
    assert "EAAGexpired" not in str(bad_token.value)

    cases = [
        (400, {"error": {"message": "(#131047) Re-engagement message", "type": "OAuthException", "code": 131047}}, False),
        (400, {"error": {"message": "(#130429) Rate limit hit", "type": "OAuthException", "code": 130429}}, True),
        (400, {"error": {"message": "(#4) Application request limit reached", "code": 4, "is_transient": True}}, True),
        (500, None, True),
        (429, None, True),
        (502, {"not": "graph"}, True),
    ]  # fmt: skip
    for status, body, retryable in cases:
        providers.fail_next(status, body=body)
        with pytest.raises(ProviderError) as refused:
            await send(WHATSAPP, providers, http, number_id, creds, "16505551234")
        assert refused.value.retryable is retryable, (status, body)
        assert f"HTTP {status}" in refused.value.detail
    providers.fail_next(
        400, body={"error": {"message": "(#131047) Re-engagement message", "code": 131047}}
    )
    with pytest.raises(ProviderError, match="131047: \\(#131047\\) Re-engagement message"):
        await send(WHATSAPP, providers, http, number_id, creds, "16505551234")


async def test_send_needs_the_token(providers: FakeProviders, http: httpx.AsyncClient) -> None:
    page_id, _ = providers.messenger_page()
    with pytest.raises(ProviderError, match="page_access_token") as missing:
        await send(MESSENGER, providers, http, page_id, {"app_secret": APP_SECRET}, "678")
    assert not missing.value.retryable
    assert providers.requests == []
