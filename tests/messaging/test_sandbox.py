"""Switchboard's own webhook signature (the SMS sandbox and custom integrations), its
payloads, and the sandbox's send that reaches nobody."""

from __future__ import annotations

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
    Outgoing,
    ProviderError,
    WebhookRefused,
    from_unix,
)
from app.messaging.providers.sandbox import SandboxAdapter
from tests.messaging.helpers import check, now, request

URL = "https://hooks.switchboard.example/v1/webhooks/sms/sandbox"
SECRET = "whsec_8pJm1b6l2Yq0vQx4Zr7cT3nW5eK9uA1sD6fG2hJ4kL0"
ACCOUNT = "sandbox-acme"
ADAPTER = SandboxAdapter()


def sign(body: bytes, timestamp: int | str, secret: str = SECRET) -> dict[str, str]:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Switchboard-Timestamp": str(timestamp), "X-Switchboard-Signature": f"v1={mac}"}


def message(**overrides: Any) -> bytes:
    body = {
        "message_id": "sbx-0001",
        "from": "+14155550199",
        "to": ACCOUNT,
        "text": "Where is my parcel?",
    }
    return json.dumps(body | overrides).encode()


def verify(body: bytes, headers: dict[str, str], secret: str | None = SECRET) -> None:
    ADAPTER.verify(request(URL, body, headers), check(webhook_secret=secret))


def ts(delta: int = 0) -> int:
    return int(now().timestamp()) + delta


def test_valid_signature_is_accepted() -> None:
    body = message()
    verify(body, sign(body, ts()))
    verify(body, sign(body, ts(-299)))
    # While a secret is rotated, the sender may sign with both.
    old = sign(body, ts(), "whsec_old")["X-Switchboard-Signature"]
    headers = sign(body, ts())
    headers["X-Switchboard-Signature"] = f"{old}, {headers['X-Switchboard-Signature']}"
    verify(body, headers)


def test_signature_failures() -> None:
    body = message()
    t = ts()
    good = sign(body, t)
    cases = [
        (message(text="Where is my parcel!"), good, SECRET),  # body changed
        (body, sign(body, t, "whsec_another"), SECRET),  # another secret
        (body, good, "whsec_another"),
        (body, {**good, "X-Switchboard-Timestamp": str(t + 1)}, SECRET),  # timestamp changed
        (
            body,
            {**good, "X-Switchboard-Signature": good["X-Switchboard-Signature"][3:]},
            SECRET,
        ),  # no v1=
        (body, {"X-Switchboard-Timestamp": str(t)}, SECRET),
        (body, {"X-Switchboard-Signature": good["X-Switchboard-Signature"]}, SECRET),
        (body, good, None),  # the channel has no secret
    ]
    for sent, headers, secret in cases:
        with pytest.raises(WebhookRefused) as refused:
            verify(sent, headers, secret)
        assert refused.value.code == "signature-invalid"
        assert SECRET not in str(refused.value)


def test_stale_and_future_are_refused() -> None:
    body = message()
    for delta in (-301, -3600, 3600):
        with pytest.raises(WebhookRefused) as refused:
            verify(body, sign(body, ts(delta)))
        assert refused.value.code == "stale"
    with pytest.raises(WebhookRefused) as refused:
        verify(body, sign(body, "1.5e9"))
    assert refused.value.code == "malformed"


def parse(body: bytes) -> list[Any]:
    return ADAPTER.parse(request(URL, body), account_id=ACCOUNT, credentials={}, received_at=now())


def test_message_and_receipt() -> None:
    at = int(now().timestamp()) - 5
    [inbound] = parse(message(sent_at=at, display_name="Ana"))
    assert inbound == InboundMessage(
        provider_message_id="sbx-0001",
        sender_id="+14155550199",
        account_id=ACCOUNT,
        text="Where is my parcel?",
        sent_at=from_unix(at),
        display_name="Ana",
    )
    assert ADAPTER.accounts(request(URL, message())) == [ACCOUNT]
    receipt_body = json.dumps(
        {"receipt": {"message_id": "sandbox-1", "status": "failed", "error": "unreachable"}}
    )
    [receipt] = parse(receipt_body.encode())
    assert isinstance(receipt, DeliveryReceipt)
    assert (receipt.provider_message_id, receipt.status, receipt.error) == (
        "sandbox-1",
        "failed",
        "unreachable",
    )


@pytest.mark.parametrize(
    "body",
    [
        message(to="someone-else"),
        message(text=None),
        message(message_id=""),
        message(message_id="x" * 201),
        json.dumps({"receipt": {"message_id": "sandbox-1", "status": "lost"}}).encode(),
        json.dumps({"receipt": "delivered"}).encode(),
        b"not json",
        b"[]",
    ],
)
def test_malformed_payloads(body: bytes) -> None:
    with pytest.raises(WebhookRefused) as refused:
        parse(body)
    assert refused.value.code == "malformed"


async def test_send_reaches_nobody() -> None:
    async with httpx.AsyncClient() as http:
        result = await ADAPTER.send(http, Outgoing(
            base_url="", account_id=ACCOUNT, credentials={}, to="+14155550199",
            text="On its way", media_urls=[], status_callback=None,
        ))  # fmt: skip
        assert result.status == "sent" and result.provider_message_id.startswith("sandbox-")
        with pytest.raises(ProviderError):
            await ADAPTER.send(http, Outgoing(
                base_url="", account_id=ACCOUNT, credentials={}, to="",
                text="On its way", media_urls=[], status_callback=None,
            ))  # fmt: skip


def test_max_age_is_the_callers() -> None:
    body = message()
    headers = sign(body, ts(-600))
    ADAPTER.verify(
        request(URL, body, headers), check(webhook_secret=SECRET, max_age=timedelta(minutes=15))
    )
