"""Switchboard's own webhook scheme: the SMS sandbox provider, and custom integrations
that post to us.

A request carries ``X-Switchboard-Timestamp`` (unix seconds) and
``X-Switchboard-Signature`` = ``v1=`` + hex HMAC-SHA256 under the channel's webhook
secret of ``"{timestamp}.{raw body}"`` (several ``v1=`` values, comma separated, may be
sent while a secret is rotated). The timestamp is signed, so an old request is stale.

Bodies are JSON: a message ``{"message_id", "from", "to", "text"}`` (optionally
``"sent_at"`` unix seconds and ``"display_name"``) or a receipt
``{"receipt": {"message_id", "status", "error"?}}``. Sending through the sandbox
reaches nobody: it answers a generated id, status "sent".
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import httpx

from app.messaging.providers.base import (
    ERROR_MAX,
    DeliveryReceipt,
    InboundMessage,
    Outgoing,
    ReceiptStatus,
    SendResult,
    WebhookCheck,
    WebhookEvent,
    WebhookRefused,
    WebhookRequest,
    generated_id,
    is_stale,
    parse_unix,
    text_of,
)

TIMESTAMP_HEADER = "X-Switchboard-Timestamp"
SIGNATURE_HEADER = "X-Switchboard-Signature"
_STATUSES: frozenset[ReceiptStatus] = frozenset({"sent", "delivered", "read", "failed"})
_MAX_ID = 200


def signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def _field(body: dict[str, Any], name: str, *, where: str = "") -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise WebhookRefused("malformed", f"{where}{name} is missing or not a string")
    if len(value) > _MAX_ID:
        raise WebhookRefused("malformed", f"{where}{name} is longer than {_MAX_ID} characters")
    return value


class SandboxAdapter:
    provider = "sandbox"

    def __init__(self, channel_type: str = "sms") -> None:
        self.channel_type = channel_type

    def accounts(self, request: WebhookRequest) -> list[str]:
        try:
            to = request.json().get("to")
        except WebhookRefused:
            return []
        return [to] if isinstance(to, str) and to else []

    def handshake(self, request: WebhookRequest, check: WebhookCheck) -> str:
        raise WebhookRefused("malformed", "the sandbox has no subscription handshake")

    def verify(self, request: WebhookRequest, check: WebhookCheck) -> None:
        timestamp = request.header(TIMESTAMP_HEADER)
        given = request.header(SIGNATURE_HEADER)
        if not timestamp or not given:
            raise WebhookRefused(
                "signature-invalid", f"no {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header"
            )
        if not check.webhook_secret:
            raise WebhookRefused("signature-invalid", "the channel has no webhook secret")
        if not timestamp.isdigit():
            raise WebhookRefused("malformed", f"{TIMESTAMP_HEADER} is not unix seconds")
        expected = signature(check.webhook_secret, timestamp, request.body).encode()
        # Check every candidate (no early exit), so timing says nothing about which.
        matched = False
        for candidate in given.split(","):
            matched |= hmac.compare_digest(expected, candidate.strip().encode())
        if not matched:
            raise WebhookRefused("signature-invalid", f"{SIGNATURE_HEADER} does not match")
        if is_stale(parse_unix(timestamp, TIMESTAMP_HEADER), check.now, check.max_age):
            raise WebhookRefused("stale", f"{TIMESTAMP_HEADER} is outside the allowed window")

    def parse(
        self,
        request: WebhookRequest,
        *,
        account_id: str,
        credentials: Mapping[str, str],
        received_at: datetime,
    ) -> list[WebhookEvent]:
        body = request.json()
        if "receipt" in body:
            receipt = body["receipt"]
            if not isinstance(receipt, dict):
                raise WebhookRefused("malformed", "receipt is not an object")
            status = receipt.get("status")
            if status not in _STATUSES:
                raise WebhookRefused(
                    "malformed", "receipt.status must be sent, delivered, read or failed"
                )
            error = text_of(receipt.get("error"))
            return [
                DeliveryReceipt(
                    provider_message_id=_field(receipt, "message_id", where="receipt."),
                    status=status,
                    at=received_at,
                    error=error[:ERROR_MAX] if error else None,
                    account_id=account_id,
                )
            ]
        to = _field(body, "to")
        if to != account_id:
            raise WebhookRefused("malformed", "to names another account")
        text = body.get("text")
        if not isinstance(text, str):
            raise WebhookRefused("malformed", "text is missing or not a string")
        sent_at = (
            parse_unix(body["sent_at"], "sent_at")
            if body.get("sent_at") is not None
            else received_at
        )
        name = text_of(body.get("display_name"))
        return [
            InboundMessage(
                provider_message_id=_field(body, "message_id"),
                sender_id=_field(body, "from"),
                account_id=to,
                text=text,
                sent_at=sent_at,
                display_name=name[:_MAX_ID] if name else None,
            )
        ]

    async def send(self, client: httpx.AsyncClient, message: Outgoing) -> SendResult:
        message.require_recipient(self.provider)
        message.require_content(self.provider)
        return SendResult(provider_message_id=generated_id("sandbox"), status="sent")
