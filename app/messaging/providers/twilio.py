"""Twilio Programmable Messaging: SMS, and WhatsApp through Twilio.

Webhooks are form posts signed with ``X-Twilio-Signature``: base64 of HMAC-SHA1 under
the account's auth token over the full URL followed by every POST parameter's name and
value, sorted by name (https://www.twilio.com/docs/usage/webhooks/webhooks-security).
The signature covers no time, so a replay within any window can only be caught by the
MessageSid, which ingress deduplicates.

Sending is ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` (form-encoded,
HTTP basic auth with the AccountSid and auth token; JSON answer with ``sid`` and
``status``). WhatsApp addresses carry a ``whatsapp:`` prefix on both sides. A WhatsApp
template goes through the Content API: ``ContentSid`` (HX..., the approved template the
channel declares) and ``ContentVariables``, a JSON object of the body's variables
(``{"1": ..., "2": ...}``), instead of ``Body`` and ``MediaUrl``
(https://www.twilio.com/docs/content/send-templates-created-with-the-content-template-builder).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from app.messaging.providers.base import (
    DeliveryReceipt,
    InboundMessage,
    MediaRef,
    Outgoing,
    OutgoingTemplate,
    ProviderError,
    ReceiptStatus,
    SendResult,
    WebhookCheck,
    WebhookEvent,
    WebhookRefused,
    WebhookRequest,
    json_answer,
    required_credential,
    retryable_status,
    transport_error,
    webhook_credential,
)

SIGNATURE_HEADER = "X-Twilio-Signature"
_WHATSAPP = "whatsapp:"
_MAX_MEDIA = 10  # Twilio sends at most 10 media per message

# MessageStatus -> our receipt status. The rest (queued, accepted, scheduled, sending,
# receiving, received) say nothing a sender needs to record.
_RECEIPT: dict[str, ReceiptStatus] = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "undelivered": "failed",
    "failed": "failed",
    "canceled": "failed",
}
# The status a created message answers with -> ours ("sent": Twilio took it).
_SEND_STATUS: dict[str, ReceiptStatus] = {
    "accepted": "sent",
    "scheduled": "sent",
    "queued": "sent",
    "sending": "sent",
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "undelivered": "failed",
    "failed": "failed",
}


def signature(auth_token: str, url: str, params: list[tuple[str, str]]) -> str:
    """Twilio's request signature (as its own helper libraries compute it: names
    sorted, and a repeated name's distinct values sorted)."""
    values: dict[str, set[str]] = {}
    for name, value in params:
        values.setdefault(name, set()).add(value)
    payload = url + "".join(
        name + value for name in sorted(values) for value in sorted(values[name])
    )
    mac = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


def _url_variants(url: str) -> list[str]:
    """The URL as given, without its port and with the scheme's default port: Twilio
    signs what it was configured with, and a proxy may have added or dropped a port."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    userinfo = parts.netloc.rpartition("@")[0]
    prefix = f"{userinfo}@" if userinfo else ""
    default = {"https": 443, "http": 80}.get(parts.scheme)
    variants = [url, urlunsplit(parts._replace(netloc=prefix + host))]
    if default is not None and parts.port is None:
        variants.append(urlunsplit(parts._replace(netloc=f"{prefix}{host}:{default}")))
    return list(dict.fromkeys(variants))


class TwilioAdapter:
    provider = "twilio"

    def __init__(self, channel_type: str) -> None:
        if channel_type not in ("sms", "whatsapp"):
            raise ValueError(f"Twilio does not serve {channel_type} channels here")
        self.channel_type = channel_type

    @property
    def _whatsapp(self) -> bool:
        return self.channel_type == "whatsapp"

    # -- webhooks --------------------------------------------------------------------------

    def accounts(self, request: WebhookRequest) -> list[str]:
        try:
            sids = [v for k, v in request.form() if k == "AccountSid" and v]
        except WebhookRefused:
            return []
        return sids[:1]

    def handshake(self, request: WebhookRequest, check: WebhookCheck) -> str:
        raise WebhookRefused("malformed", "Twilio has no subscription handshake")

    def verify(self, request: WebhookRequest, check: WebhookCheck) -> None:
        given = request.header(SIGNATURE_HEADER)
        if not given:
            raise WebhookRefused("signature-invalid", f"no {SIGNATURE_HEADER} header")
        token = webhook_credential(check.credentials, "auth_token")
        params = request.form() if request.method.upper() == "POST" else []
        for url in _url_variants(request.url):
            expected = signature(token, url, params)
            if hmac.compare_digest(expected.encode(), given.strip().encode()):
                return
        raise WebhookRefused("signature-invalid", f"{SIGNATURE_HEADER} does not match")

    def parse(
        self,
        request: WebhookRequest,
        *,
        account_id: str,
        credentials: Mapping[str, str],
        received_at: datetime,
    ) -> list[WebhookEvent]:
        form: dict[str, str] = {}
        for name, value in request.form():
            form.setdefault(name, value)
        account = form.get("AccountSid")
        if not account:
            raise WebhookRefused("malformed", "no AccountSid")
        if account != account_id:
            raise WebhookRefused("malformed", "AccountSid names another account")
        sid = form.get("MessageSid") or form.get("SmsMessageSid") or form.get("SmsSid")
        if not sid:
            raise WebhookRefused("malformed", "no MessageSid")
        status = (form.get("MessageStatus") or form.get("SmsStatus") or "").lower()
        if status and status not in ("received", "receiving"):
            return self._receipt(form, sid, status, account, received_at)
        return [self._inbound(form, sid, account, received_at)]

    def _receipt(
        self, form: dict[str, str], sid: str, status: str, account: str, at: datetime
    ) -> list[WebhookEvent]:
        ours = _RECEIPT.get(status)
        if ours is None:
            return []
        error = None
        if ours == "failed":
            code = form.get("ErrorCode")
            message = form.get("ErrorMessage")
            error = f"Twilio {status}" + (f", error {code}" if code else "")
            if message:
                error += f": {message}"
        to = form.get("To")
        return [
            DeliveryReceipt(
                provider_message_id=sid,
                status=ours,
                at=at,
                error=error,
                account_id=account,
                recipient_id=self._customer(to, form.get("WaId")) if to else None,
            )
        ]

    def _customer(self, address: str, wa_id: str | None = None) -> str:
        """The customer's id in our identity form: E.164 for SMS, the wa_id (digits)
        for WhatsApp."""
        if address.startswith(_WHATSAPP):
            if not self._whatsapp:
                raise WebhookRefused("malformed", "a WhatsApp address on an SMS channel")
            if wa_id and wa_id.isdigit():
                return wa_id
            return address[len(_WHATSAPP) :].lstrip("+")
        if self._whatsapp:
            raise WebhookRefused("malformed", "a WhatsApp channel got an address without whatsapp:")
        return address

    def _inbound(
        self, form: dict[str, str], sid: str, account: str, received_at: datetime
    ) -> InboundMessage:
        sender = form.get("From")
        if not sender:
            raise WebhookRefused("malformed", "no From")
        try:
            count = int(form.get("NumMedia") or 0)
        except ValueError:
            raise WebhookRefused("malformed", "NumMedia is not a number") from None
        if not 0 <= count <= _MAX_MEDIA:
            raise WebhookRefused("malformed", "NumMedia is out of range")
        media = []
        for i in range(count):
            url = form.get(f"MediaUrl{i}")
            if not url:
                raise WebhookRefused("malformed", f"NumMedia is {count} but MediaUrl{i} is missing")
            media.append(MediaRef(url=url, content_type=form.get(f"MediaContentType{i}") or None))
        return InboundMessage(
            provider_message_id=sid,
            sender_id=self._customer(sender, form.get("WaId")),
            account_id=account,
            text=form.get("Body", ""),
            media=media,
            sent_at=received_at,  # Twilio's inbound webhook carries no time
            display_name=form.get("ProfileName") or None,
            to_address=(form.get("To") or "").removeprefix(_WHATSAPP) or None,
        )

    # -- sending ---------------------------------------------------------------------------

    def _address(self, value: str) -> str:
        if not self._whatsapp or value.startswith(_WHATSAPP):
            return value
        return _WHATSAPP + (value if value.startswith("+") else "+" + value)

    async def send(self, client: httpx.AsyncClient, message: Outgoing) -> SendResult:
        token = required_credential(self.provider, message.credentials, "auth_token")
        message.require_recipient(self.provider)
        sender = message.sender
        if not sender:
            raise ProviderError(self.provider, "the channel has no sending number", retryable=False)
        message.require_content(self.provider)
        account_id = message.account_id
        form: dict[str, str | list[str]] = {"To": self._address(message.to)}
        if sender.startswith("MG"):  # a Messaging Service picks the number itself
            form["MessagingServiceSid"] = sender
        else:
            form["From"] = self._address(sender)
        if message.template is not None:
            form.update(self._content(message.template))
        else:
            if message.text:
                form["Body"] = message.text
            if message.media_urls:
                form["MediaUrl"] = list(message.media_urls)  # repeated: MediaUrl=a&MediaUrl=b
        if message.status_callback:
            form["StatusCallback"] = message.status_callback
        base = message.base_url.rstrip("/")
        url = f"{base}/2010-04-01/Accounts/{quote(account_id, safe='')}/Messages.json"
        try:
            r = await client.post(url, data=form, auth=(account_id, token))
        except httpx.HTTPError as exc:
            raise transport_error(self.provider, exc) from exc
        if r.status_code not in (200, 201):
            raise self._refused(r)
        body = json_answer(self.provider, r)
        sid = body.get("sid")
        if not isinstance(sid, str) or not sid:
            raise ProviderError(self.provider, "the answer carries no sid", retryable=False)
        status = _SEND_STATUS.get(str(body.get("status") or "").lower(), "sent")
        return SendResult(provider_message_id=sid, status=status)

    def _content(self, template: OutgoingTemplate) -> dict[str, str | list[str]]:
        """A template as Twilio's Content API takes it: by its Content SID, with the
        parameters as numbered variables."""
        if not self._whatsapp:
            raise ProviderError(self.provider, "templates are for WhatsApp", retryable=False)
        if not template.content_sid:
            raise ProviderError(
                self.provider,
                f"template {template.name} ({template.language}) has no Content SID",
                retryable=False,
            )
        form: dict[str, str | list[str]] = {"ContentSid": template.content_sid}
        if template.parameters:
            variables = {str(i): value for i, value in enumerate(template.parameters, 1)}
            form["ContentVariables"] = json.dumps(variables, ensure_ascii=False)
        return form

    def _refused(self, r: httpx.Response) -> ProviderError:
        code: Any = None
        message: Any = None
        try:
            body = r.json()
            if isinstance(body, dict):
                code, message = body.get("code"), body.get("message")
        except ValueError:
            pass
        detail = f"HTTP {r.status_code}"
        if code is not None:
            detail += f", Twilio error {code}"
        if isinstance(message, str) and message:
            detail += f": {message}"
        return ProviderError(self.provider, detail, retryable=retryable_status(r.status_code))
