"""Twilio SMS and WhatsApp: X-Twilio-Signature, inbound and status-callback parsing,
and sends against a local server speaking Twilio's Messages API."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from app.messaging.providers.base import (
    DeliveryReceipt,
    InboundMessage,
    Outgoing,
    ProviderError,
    WebhookRefused,
)
from app.messaging.providers.twilio import TwilioAdapter, signature
from tests.messaging.fake_providers import FakeProviders
from tests.messaging.helpers import check, form_body, now, request

URL = "https://hooks.switchboard.example/v1/webhooks/sms/twilio"
ACCOUNT = "AC" + "0" * 31 + "1"
TOKEN = "f00dfeedf00dfeedf00dfeedf00dfeed"
SMS = TwilioAdapter("sms")
WHATSAPP = TwilioAdapter("whatsapp")


def inbound_sms(**overrides: str) -> dict[str, str]:
    """An inbound SMS webhook as Twilio posts it (field for field)."""
    params = {
        "ToCountry": "US",
        "ToState": "CA",
        "SmsMessageSid": "SM1f0e8ae6ade43cb3c0ce4525424e404f",
        "NumMedia": "0",
        "ToCity": "SAN FRANCISCO",
        "FromZip": "94105",
        "SmsSid": "SM1f0e8ae6ade43cb3c0ce4525424e404f",
        "FromState": "CA",
        "SmsStatus": "received",
        "FromCity": "SAN FRANCISCO",
        "Body": "Hi, my order #1042 has not arrived",
        "FromCountry": "US",
        "To": "+14155550100",
        "ToZip": "94105",
        "NumSegments": "1",
        "ReferralNumMedia": "0",
        "MessageSid": "SM1f0e8ae6ade43cb3c0ce4525424e404f",
        "AccountSid": ACCOUNT,
        "From": "+14155550199",
        "ApiVersion": "2010-04-01",
    }
    params.update(overrides)
    return params


def signed(
    params: dict[str, str], *, url: str = URL, token: str = TOKEN
) -> tuple[bytes, dict[str, str]]:
    return form_body(params), {"X-Twilio-Signature": signature(token, url, list(params.items()))}


def verify(
    adapter: TwilioAdapter, url: str, body: bytes, headers: dict[str, str], token: str = TOKEN
) -> None:
    adapter.verify(request(url, body, headers), check({"auth_token": token}))


# -- signatures ------------------------------------------------------------------------------


def test_signature_matches_twilios_published_examples() -> None:
    # The example of Twilio's webhook-security documentation and of its helper library's tests.
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    for caller, expected in (
        ("+12349013030", "0/KCTR6DLpKmkAf8muzZqo1nDgQ="),
        ("+14158675309", "RSOYDt4T1cUTdK1PDd93/VVr8B8="),
    ):
        params = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", caller),
            ("Digits", "1234"),
            ("From", caller),
            ("To", "+18005551212"),
        ]
        assert signature("12345", url, params) == expected
        # The order the form arrives in does not matter: names are sorted.
        assert signature("12345", url, list(reversed(params))) == expected


def test_valid_signature_is_accepted() -> None:
    body, headers = signed(inbound_sms())
    verify(SMS, URL, body, headers)


def test_signature_over_a_url_with_query_and_default_port() -> None:
    url = URL + "?channel=abc"
    body, headers = signed(inbound_sms(), url=url)
    verify(SMS, url, body, headers)
    # Twilio signed without the port; a proxy reported it with the scheme's default one.
    verify(
        SMS,
        "https://hooks.switchboard.example:443/v1/webhooks/sms/twilio?channel=abc",
        body,
        headers,
    )


@pytest.mark.parametrize(
    "tamper",
    [
        lambda body, url: (body.replace(b"arrived", b"arrivedX"), url),  # body changed
        lambda body, url: (body + b"&Extra=1", url),  # parameter added
        lambda body, url: (body, url + "?x=1"),  # another URL
        lambda body, url: (body, url.replace("https://", "http://")),
    ],
)
def test_tampered_request_is_refused(tamper: Callable[[bytes, str], tuple[bytes, str]]) -> None:
    body, headers = signed(inbound_sms())
    body, url = tamper(body, URL)
    with pytest.raises(WebhookRefused) as refused:
        verify(SMS, url, body, headers)
    assert refused.value.code == "signature-invalid"


def test_wrong_token_and_missing_header_are_refused() -> None:
    body, headers = signed(inbound_sms(), token="another-accounts-token")
    with pytest.raises(WebhookRefused) as refused:
        verify(SMS, URL, body, headers)
    assert refused.value.code == "signature-invalid"
    with pytest.raises(WebhookRefused) as refused:
        verify(SMS, URL, body, {})
    assert refused.value.code == "signature-invalid"
    assert "X-Twilio-Signature" in refused.value.reason
    # A channel without its auth token verifies nothing.
    body, headers = signed(inbound_sms())
    with pytest.raises(WebhookRefused) as refused:
        SMS.verify(request(URL, body, headers), check())
    assert refused.value.code == "signature-invalid"


def test_twilio_has_no_handshake() -> None:
    with pytest.raises(WebhookRefused):
        SMS.handshake(request(URL, method="GET"), check({"auth_token": TOKEN}, "x"))


# -- parsing ---------------------------------------------------------------------------------


def parse(adapter: TwilioAdapter, params: dict[str, str], account: str = ACCOUNT) -> list[Any]:
    return adapter.parse(
        request(URL, form_body(params)), account_id=account, credentials={}, received_at=now()
    )


def test_inbound_sms() -> None:
    assert SMS.accounts(request(URL, form_body(inbound_sms()))) == [ACCOUNT]
    at = now()
    [message] = SMS.parse(
        request(URL, form_body(inbound_sms())), account_id=ACCOUNT, credentials={}, received_at=at
    )
    assert message == InboundMessage(
        provider_message_id="SM1f0e8ae6ade43cb3c0ce4525424e404f",
        sender_id="+14155550199",
        account_id=ACCOUNT,
        text="Hi, my order #1042 has not arrived",
        sent_at=at,
        media=[],
        display_name=None,
        to_address="+14155550100",
    )


def test_inbound_mms_with_media() -> None:
    media_base = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Messages/MM80e7/Media/"
    params = inbound_sms(
        MessageSid="MM80e7d5ee5e4b5e3f63ffb3c4f0e1f2a3",
        NumMedia="2",
        Body="",
        MediaUrl0=media_base + "ME01",
        MediaContentType0="image/jpeg",
        MediaUrl1=media_base + "ME02",
        MediaContentType1="application/pdf",
    )
    [message] = parse(SMS, params)
    assert message.text == ""
    assert [(m.url, m.content_type) for m in message.media] == [
        (media_base + "ME01", "image/jpeg"),
        (media_base + "ME02", "application/pdf"),
    ]


def test_inbound_whatsapp_through_twilio() -> None:
    params = inbound_sms(
        From="whatsapp:+14155550199",
        To="whatsapp:+14155550100",
        WaId="14155550199",
        ProfileName="Ana Lima",
        Body="Olá",
    )
    [message] = parse(WHATSAPP, params)
    assert message.sender_id == "14155550199"  # the wa_id, as Meta's own webhooks name it
    assert message.display_name == "Ana Lima"
    assert message.text == "Olá"


def test_status_callbacks() -> None:
    base = {
        "AccountSid": ACCOUNT,
        "MessageSid": "SM5ef8732a3c49700934481addd5ce1659",
        "SmsSid": "SM5ef8732a3c49700934481addd5ce1659",
        "From": "+14155550100",
        "To": "+14155550199",
        "ApiVersion": "2010-04-01",
    }
    [delivered] = parse(SMS, {**base, "MessageStatus": "delivered", "SmsStatus": "delivered"})
    assert isinstance(delivered, DeliveryReceipt)
    assert (delivered.provider_message_id, delivered.status, delivered.error) == (
        "SM5ef8732a3c49700934481addd5ce1659",
        "delivered",
        None,
    )
    assert delivered.recipient_id == "+14155550199"
    [failed] = parse(SMS, {**base, "MessageStatus": "undelivered", "ErrorCode": "30003"})
    assert failed.status == "failed"
    assert failed.error == "Twilio undelivered, error 30003"
    # Twilio's intermediate states say nothing to record.
    assert parse(SMS, {**base, "MessageStatus": "queued"}) == []
    assert parse(SMS, {**base, "MessageStatus": "sending"}) == []
    [read] = parse(WHATSAPP, {**base, "To": "whatsapp:+14155550199", "MessageStatus": "read"})
    assert (read.status, read.recipient_id) == ("read", "14155550199")


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        (inbound_sms(AccountSid="AC" + "9" * 32), "another account"),
        (inbound_sms(NumMedia="2", MediaUrl0="https://api.twilio.com/m/1"), "MediaUrl1"),
        (inbound_sms(NumMedia="many"), "NumMedia"),
        (inbound_sms(NumMedia="11"), "NumMedia"),
        (inbound_sms(From="whatsapp:+14155550199"), "WhatsApp"),
        (
            {
                k: v
                for k, v in inbound_sms().items()
                if k not in ("MessageSid", "SmsMessageSid", "SmsSid")
            },
            "MessageSid",
        ),
        ({k: v for k, v in inbound_sms().items() if k != "From"}, "From"),
    ],
)
def test_malformed_webhooks_are_refused(params: dict[str, str], reason: str) -> None:
    with pytest.raises(WebhookRefused) as refused:
        parse(SMS, params)
    assert refused.value.code == "malformed"
    assert reason in refused.value.reason


def test_whatsapp_channel_refuses_plain_numbers() -> None:
    with pytest.raises(WebhookRefused):
        parse(WHATSAPP, inbound_sms())


# -- sending ---------------------------------------------------------------------------------


async def test_send_sms(providers: FakeProviders, http: httpx.AsyncClient) -> None:
    sid, token = providers.twilio_account()
    result = await SMS.send(
        http,
        Outgoing(
            base_url=providers.url,
            account_id=sid,
            credentials={"auth_token": token},
            to="+14155550199",
            text="Your order ships today.",
            media_urls=["https://files.example/a.jpg", "https://files.example/b.pdf"],
            status_callback="https://hooks.switchboard.example/v1/webhooks/sms/twilio/status",
            sender="+14155550100",
        ),
    )
    assert result.provider_message_id.startswith("SM") and len(result.provider_message_id) == 34
    assert result.status == "sent"  # Twilio's "queued": it has the message
    [sent] = providers.made(rf"/2010-04-01/Accounts/{sid}/Messages\.json")
    assert sent.form == {
        "To": ["+14155550199"],
        "From": ["+14155550100"],
        "Body": ["Your order ships today."],
        "MediaUrl": ["https://files.example/a.jpg", "https://files.example/b.pdf"],
        "StatusCallback": ["https://hooks.switchboard.example/v1/webhooks/sms/twilio/status"],
    }


async def test_send_whatsapp_through_twilio(
    providers: FakeProviders, http: httpx.AsyncClient
) -> None:
    sid, token = providers.twilio_account()
    await WHATSAPP.send(
        http,
        Outgoing(
            base_url=providers.url,
            account_id=sid,
            credentials={"auth_token": token},
            to="14155550199",  # a wa_id, as the customer's WhatsApp identity stores it
            text="Hello",
            media_urls=[],
            status_callback=None,
            sender="+14155550100",
        ),
    )
    [sent] = providers.requests
    assert sent.form["To"] == ["whatsapp:+14155550199"]
    assert sent.form["From"] == ["whatsapp:+14155550100"]
    assert "StatusCallback" not in sent.form


async def test_send_through_a_messaging_service(
    providers: FakeProviders, http: httpx.AsyncClient
) -> None:
    sid, token = providers.twilio_account()
    service = "MG" + "a" * 32
    await SMS.send(http, Outgoing(
        base_url=providers.url, account_id=sid, credentials={"auth_token": token},
        to="+14155550199", text="Hi", media_urls=[], status_callback=None, sender=service,
    ))  # fmt: skip
    [sent] = providers.requests
    assert sent.form["MessagingServiceSid"] == [service]
    assert "From" not in sent.form


async def send_sms(providers: FakeProviders, http: httpx.AsyncClient, **kw: str) -> None:
    sid, token = providers.twilio_account()
    args = {"to": "+14155550199", "token": token, "base_url": providers.url} | kw
    await SMS.send(
        http,
        Outgoing(
            base_url=args["base_url"],
            account_id=sid,
            credentials={"auth_token": args["token"]},
            to=args["to"],
            text="Hi",
            media_urls=[],
            status_callback=None,
            sender="+14155550100",
        ),
    )


async def test_send_errors_are_mapped(providers: FakeProviders, http: httpx.AsyncClient) -> None:
    with pytest.raises(ProviderError) as bad_auth:
        await send_sms(providers, http, token="not-the-token")
    assert not bad_auth.value.retryable
    assert "20003" in bad_auth.value.detail and "not-the-token" not in str(bad_auth.value)

    with pytest.raises(ProviderError) as bad_number:
        await send_sms(providers, http, to="0800 FLOWERS")
    assert not bad_number.value.retryable
    assert "HTTP 400, Twilio error 21211" in bad_number.value.detail

    for status in (500, 503, 429):
        providers.fail_next(status)
        with pytest.raises(ProviderError) as busy:
            await send_sms(providers, http)
        assert busy.value.retryable, status
        assert f"HTTP {status}" in busy.value.detail


async def test_send_without_an_answer_is_retryable(http: httpx.AsyncClient) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ProviderError) as down:
        await SMS.send(http, Outgoing(
            base_url=f"http://127.0.0.1:{port}", account_id=ACCOUNT,
            credentials={"auth_token": TOKEN}, to="+14155550199", text="Hi",
            media_urls=[], status_callback=None, sender="+14155550100",
        ))  # fmt: skip
    assert down.value.retryable
    assert "ConnectError" in down.value.detail and TOKEN not in str(down.value)


async def test_send_refuses_what_twilio_would(
    providers: FakeProviders, http: httpx.AsyncClient
) -> None:
    sid, token = providers.twilio_account()

    async def send(credentials: dict[str, str], text: str, sender: str | None) -> None:
        await SMS.send(
            http,
            Outgoing(
                base_url=providers.url,
                account_id=sid,
                credentials=credentials,
                to="+14155550199",
                text=text,
                media_urls=[],
                status_callback=None,
                sender=sender,
            ),
        )

    with pytest.raises(ProviderError, match="sending number"):
        await send({"auth_token": token}, "x", None)
    with pytest.raises(ProviderError, match="auth_token"):
        await send({}, "x", "+14155550100")
    with pytest.raises(ProviderError, match="nothing to send") as empty:
        await send({"auth_token": token}, "", "+14155550100")
    assert not empty.value.retryable
    assert providers.requests == []
