"""Meta: the WhatsApp Business Cloud API and Messenger, through the Graph API.

Webhooks (https://developers.facebook.com/docs/graph-api/webhooks/getting-started):
a GET handshake (``hub.mode=subscribe``, ``hub.verify_token`` = the channel's webhook
secret, answer ``hub.challenge``), then JSON posts signed with ``X-Hub-Signature-256``
= ``sha256=`` + hex HMAC-SHA256 of the raw body under the app secret. One post may
batch several accounts (phone numbers, pages) of one app: ``parse`` keeps the account
it is asked for. The signature covers no time; message timestamps are in the signed
body, and ``base.is_stale`` lets ingress judge them.

Sending: ``POST {graph}/{version}/{phone_number_id}/messages`` (WhatsApp) and
``POST {graph}/{version}/me/messages`` (Messenger), bearer token, JSON both ways.
``base_url`` includes the version (``registry.api_base``). WhatsApp sends an approved
template as ``type: template``
(https://developers.facebook.com/docs/whatsapp/cloud-api/guides/send-message-templates);
Messenger sends ``messaging_type: RESPONSE`` within 24 hours of the customer's message
and ``MESSAGE_TAG`` with the message's tag after that
(https://developers.facebook.com/docs/messenger-platform/send-messages/message-tags).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import mimetypes
import posixpath
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

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
    parse_unix,
    required_credential,
    retryable_status,
    text_of,
    transport_error,
    webhook_credential,
)

SIGNATURE_HEADER = "X-Hub-Signature-256"
_OBJECT = {"whatsapp": "whatsapp_business_account", "messenger": "page"}
_TOKEN = {"whatsapp": "access_token", "messenger": "page_access_token"}
_WA_MEDIA = ("image", "document", "audio", "video", "sticker")
_WA_STATUS: dict[str, ReceiptStatus] = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "failed": "failed",
}
# Graph error codes that mean "later": throttling and transient failures (Meta answers
# most of them with HTTP 400). https://developers.facebook.com/docs/graph-api/guides/error-handling
# and the WhatsApp Cloud API's error codes.
_RETRYABLE_CODES = frozenset(
    {1, 2, 4, 17, 32, 341, 613, 1200, 80007, 130429, 131000, 131016, 131048, 131056}
)
_MAX_CHALLENGE = 200


def signature(app_secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _id(value: Any) -> str | None:
    """Meta's ids are strings; some older payloads send numbers."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    return value if isinstance(value, str) and value else None


def _media_kind(url: str) -> tuple[str, str | None]:
    """The attachment kind a file's URL suggests, and its file name."""
    path = urlsplit(url).path
    guessed, _ = mimetypes.guess_type(path)
    name = posixpath.basename(path) or None
    major = (guessed or "").split("/")[0]
    if major in ("image", "video", "audio"):
        return major, name
    return "document", name


class MetaAdapter:
    provider = "meta"

    def __init__(self, channel_type: str) -> None:
        if channel_type not in _OBJECT:
            raise ValueError(f"Meta does not serve {channel_type} channels here")
        self.channel_type = channel_type

    # -- webhooks --------------------------------------------------------------------------

    def accounts(self, request: WebhookRequest) -> list[str]:
        try:
            body = request.json()
        except WebhookRefused:
            return []
        found: list[str] = []
        for entry in _dicts(body.get("entry")):
            if self.channel_type == "messenger":
                ids = [_id(entry.get("id"))]
            else:
                ids = [
                    _id(_dict(_dict(change.get("value")).get("metadata")).get("phone_number_id"))
                    for change in _dicts(entry.get("changes"))
                ]
            found += [i for i in ids if i]
        return list(dict.fromkeys(found))

    def handshake(self, request: WebhookRequest, check: WebhookCheck) -> str:
        query = request.query
        if query.get("hub.mode") != "subscribe":
            raise WebhookRefused("malformed", "hub.mode is not subscribe")
        if not check.webhook_secret:
            raise WebhookRefused("signature-invalid", "the channel has no webhook secret")
        given = query.get("hub.verify_token", "")
        if not hmac.compare_digest(given.encode(), check.webhook_secret.encode()):
            raise WebhookRefused("signature-invalid", "hub.verify_token does not match")
        challenge = query.get("hub.challenge", "")
        # Meta sends digits; answer nothing else, so the endpoint never echoes markup.
        if not challenge or len(challenge) > _MAX_CHALLENGE or not challenge.isalnum():
            raise WebhookRefused("malformed", "hub.challenge is missing or not alphanumeric")
        return challenge

    def verify(self, request: WebhookRequest, check: WebhookCheck) -> None:
        given = request.header(SIGNATURE_HEADER)
        if not given:
            raise WebhookRefused("signature-invalid", f"no {SIGNATURE_HEADER} header")
        expected = signature(webhook_credential(check.credentials, "app_secret"), request.body)
        if not hmac.compare_digest(expected.encode(), given.strip().lower().encode()):
            raise WebhookRefused("signature-invalid", f"{SIGNATURE_HEADER} does not match")

    def parse(
        self,
        request: WebhookRequest,
        *,
        account_id: str,
        credentials: Mapping[str, str],
        received_at: datetime,
    ) -> list[WebhookEvent]:
        body = request.json()
        if body.get("object") != _OBJECT[self.channel_type]:
            raise WebhookRefused(
                "malformed", f"object is not {_OBJECT[self.channel_type]} for {self.channel_type}"
            )
        entries = body.get("entry")
        if not isinstance(entries, list):
            raise WebhookRefused("malformed", "no entry list")
        events: list[WebhookEvent] = []
        for entry in _dicts(entries):
            if self.channel_type == "whatsapp":
                for change in _dicts(entry.get("changes")):
                    events += self._whatsapp_change(change, account_id)
            elif _id(entry.get("id")) == account_id:
                for item in _dicts(entry.get("messaging")):
                    events += self._messenger_event(item, account_id)
        return events

    # WhatsApp ------------------------------------------------------------------------------

    def _whatsapp_change(self, change: dict[str, Any], account_id: str) -> list[WebhookEvent]:
        if change.get("field", "messages") != "messages":
            return []  # account updates, template reviews...: not conversations
        value = _dict(change.get("value"))
        if _id(_dict(value.get("metadata")).get("phone_number_id")) != account_id:
            return []
        names: dict[str, str] = {}
        for contact in _dicts(value.get("contacts")):
            wa_id, name = (
                _id(contact.get("wa_id")),
                text_of(_dict(contact.get("profile")).get("name")),
            )
            if wa_id and name:
                names[wa_id] = name
        events: list[WebhookEvent] = []
        for message in _dicts(value.get("messages")):
            inbound = self._whatsapp_message(message, account_id, names)
            if inbound is not None:
                events.append(inbound)
        for status in _dicts(value.get("statuses")):
            receipt = self._whatsapp_status(status, account_id)
            if receipt is not None:
                events.append(receipt)
        return events

    def _whatsapp_message(
        self, message: dict[str, Any], account_id: str, names: dict[str, str]
    ) -> InboundMessage | None:
        mid, sender = _id(message.get("id")), _id(message.get("from"))
        if not mid or not sender:
            raise WebhookRefused("malformed", "a WhatsApp message without id or from")
        sent_at = parse_unix(message.get("timestamp"), "messages[].timestamp")
        kind = message.get("type")
        body = _dict(message.get(kind)) if isinstance(kind, str) else {}
        text = ""
        media: list[MediaRef] = []
        if kind == "text":
            text = text_of(body.get("body")) or ""
        elif kind in _WA_MEDIA:
            media_id = _id(body.get("id"))
            if not media_id:
                raise WebhookRefused("malformed", f"a WhatsApp {kind} without a media id")
            media.append(
                MediaRef(
                    media_id=media_id,
                    content_type=text_of(body.get("mime_type")),
                    filename=text_of(body.get("filename")),
                )
            )
            text = text_of(body.get("caption")) or ""
        elif kind == "button":
            text = text_of(body.get("text")) or ""
        elif kind == "interactive":
            reply = _dict(body.get("button_reply")) or _dict(body.get("list_reply"))
            text = text_of(reply.get("title")) or ""
        elif kind == "location":
            lat, lon = body.get("latitude"), body.get("longitude")
            label = " ".join(
                t for t in (text_of(body.get("name")), text_of(body.get("address"))) if t
            )
            text = f"Location: {lat}, {lon}" + (f" ({label})" if label else "")
        elif kind == "contacts":
            cards = []
            for card in _dicts(message.get("contacts")):
                name = text_of(_dict(card.get("name")).get("formatted_name")) or "contact"
                phones = [text_of(p.get("phone")) for p in _dicts(card.get("phones"))]
                cards.append(" ".join([name, *[p for p in phones if p]]))
            text = "Contact: " + "; ".join(cards)
        elif kind == "reaction":
            emoji = text_of(body.get("emoji"))
            if not emoji:
                return None  # a reaction taken back
            text = emoji
        else:
            # unsupported, system, order...: the agent should still see that something came.
            text = f"[WhatsApp {kind or 'unknown'} message]"
        return InboundMessage(
            provider_message_id=mid,
            sender_id=sender,
            account_id=account_id,
            text=text,
            media=media,
            sent_at=sent_at,
            display_name=names.get(sender),
        )

    def _whatsapp_status(self, status: dict[str, Any], account_id: str) -> DeliveryReceipt | None:
        ours = _WA_STATUS.get(str(status.get("status")))
        if ours is None:
            return None  # "deleted", "warning"...
        mid = _id(status.get("id"))
        if not mid:
            raise WebhookRefused("malformed", "a WhatsApp status without id")
        error = None
        if ours == "failed":
            parts = []
            for e in _dicts(status.get("errors")):
                title = text_of(e.get("title")) or text_of(e.get("message")) or "error"
                code = e.get("code")
                details = text_of(_dict(e.get("error_data")).get("details"))
                parts.append(
                    title
                    + (f" ({code})" if code is not None else "")
                    + (f": {details}" if details else "")
                )
            error = "; ".join(parts) or "failed"
        return DeliveryReceipt(
            provider_message_id=mid,
            status=ours,
            at=parse_unix(status.get("timestamp"), "statuses[].timestamp"),
            error=error,
            account_id=account_id,
            recipient_id=_id(status.get("recipient_id")),
        )

    # Messenger -----------------------------------------------------------------------------

    def _messenger_event(self, item: dict[str, Any], account_id: str) -> list[WebhookEvent]:
        customer = _id(_dict(item.get("sender")).get("id"))
        at = parse_unix(item.get("timestamp"), "messaging[].timestamp", millis=True)
        if "message" in item or "postback" in item:
            inbound = self._messenger_inbound(item, customer)
            if inbound is None:
                return []
            mid, sender, text, media = inbound
            return [
                InboundMessage(
                    provider_message_id=mid,
                    sender_id=sender,
                    account_id=account_id,
                    text=text,
                    media=media,
                    sent_at=at,
                )
            ]
        if "delivery" in item:
            delivery = _dict(item.get("delivery"))
            watermark = (
                parse_unix(delivery["watermark"], "delivery.watermark", millis=True)
                if "watermark" in delivery
                else None
            )
            mids = [m for m in (delivery.get("mids") or []) if isinstance(m, str) and m]
            if not mids:
                return [
                    self._messenger_receipt(None, "delivered", at, account_id, customer, watermark)
                ]
            return [
                self._messenger_receipt(m, "delivered", at, account_id, customer, watermark)
                for m in mids
            ]
        if "read" in item:
            read = _dict(item.get("read"))
            if "watermark" not in read:
                raise WebhookRefused("malformed", "a Messenger read without watermark")
            watermark = parse_unix(read["watermark"], "read.watermark", millis=True)
            return [self._messenger_receipt(None, "read", at, account_id, customer, watermark)]
        return []  # reactions, referrals, opt-ins, handovers...

    @staticmethod
    def _messenger_inbound(
        item: dict[str, Any], customer: str | None
    ) -> tuple[str, str, str, list[MediaRef]] | None:
        """A customer's message or postback (a button tap): its mid, sender, text and
        files. None for an echo of our own page's message."""
        if "message" not in item:
            postback = _dict(item.get("postback"))
            if not customer:
                raise WebhookRefused("malformed", "a Messenger postback without sender")
            # Postbacks (button taps) carry a mid in current API versions; older ones
            # do not, and sender + time names the tap just as uniquely.
            mid = _id(postback.get("mid")) or f"postback-{customer}-{item.get('timestamp')}"
            title = text_of(postback.get("title")) or text_of(postback.get("payload")) or ""
            return mid, customer, title, []
        message = _dict(item.get("message"))
        if message.get("is_echo"):
            return None  # our own page's message, sent by us or in Meta's inbox
        message_id = _id(message.get("mid"))
        if not message_id or not customer:
            raise WebhookRefused("malformed", "a Messenger message without mid or sender")
        text = text_of(message.get("text")) or ""
        media: list[MediaRef] = []
        links: list[str] = []
        for attachment in _dicts(message.get("attachments")):
            kind = attachment.get("type")
            payload = _dict(attachment.get("payload"))
            url = text_of(payload.get("url"))
            if kind in ("image", "video", "audio", "file") and url:
                media.append(MediaRef(url=url))
            elif url:  # "fallback": a shared link
                links.append(url)
        if links:
            text = "\n".join([t for t in (text, *links) if t])
        return message_id, customer, text, media

    @staticmethod
    def _messenger_receipt(
        mid: str | None,
        status: ReceiptStatus,
        at: datetime,
        account_id: str,
        customer: str | None,
        watermark: datetime | None,
    ) -> DeliveryReceipt:
        return DeliveryReceipt(
            provider_message_id=mid,
            status=status,
            at=at,
            account_id=account_id,
            recipient_id=customer,
            watermark=watermark,
        )

    # -- sending ---------------------------------------------------------------------------

    async def send(self, client: httpx.AsyncClient, message: Outgoing) -> SendResult:
        """One Graph message for the text and one per file (neither API takes both in
        one message). The result names the first; receipts for the others match no
        message of ours and are dropped by ingress."""
        token = required_credential(self.provider, message.credentials, _TOKEN[self.channel_type])
        message.require_recipient(self.provider)
        message.require_content(self.provider)
        base, to = message.base_url.rstrip("/"), message.to
        if message.template is not None and self.channel_type != "whatsapp":
            raise ProviderError(self.provider, "templates are for WhatsApp", retryable=False)
        if self.channel_type == "whatsapp":
            url = f"{base}/{quote(message.account_id, safe='')}/messages"
            if message.template is not None:
                payloads = [self._whatsapp_template(to.lstrip("+"), message.template)]
            else:
                payloads = self._whatsapp_payloads(to.lstrip("+"), message.text, message.media_urls)
        else:
            url = f"{base}/me/messages"
            payloads = self._messenger_payloads(
                to, message.text, message.media_urls, message.messaging_tag
            )
        first: str | None = None
        for payload in payloads:
            message_id = await self._post(client, url, token, payload)
            first = first or message_id
        assert first is not None
        return SendResult(provider_message_id=first, status="sent")

    @staticmethod
    def _whatsapp_payloads(to: str, text: str, media_urls: list[str]) -> list[dict[str, Any]]:
        head = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to}
        out: list[dict[str, Any]] = []
        if text:
            out.append({**head, "type": "text", "text": {"body": text, "preview_url": False}})
        for link in media_urls:
            kind, name = _media_kind(link)
            media: dict[str, Any] = {"link": link}
            if kind == "document" and name:
                media["filename"] = name
            out.append({**head, "type": kind, kind: media})
        return out

    @staticmethod
    def _whatsapp_template(to: str, template: OutgoingTemplate) -> dict[str, Any]:
        body: dict[str, Any] = {"name": template.name, "language": {"code": template.language}}
        if template.parameters:
            body["components"] = [
                {
                    "type": "body",
                    "parameters": [{"type": "text", "text": p} for p in template.parameters],
                }
            ]
        return {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
            "type": "template",
            "template": body,
        }

    @staticmethod
    def _messenger_payloads(
        to: str, text: str, media_urls: list[str], tag: str | None = None
    ) -> list[dict[str, Any]]:
        head: dict[str, Any] = {"recipient": {"id": to}, "messaging_type": "RESPONSE"}
        if tag:
            head |= {"messaging_type": "MESSAGE_TAG", "tag": tag}
        out: list[dict[str, Any]] = []
        if text:
            out.append({**head, "message": {"text": text}})
        for link in media_urls:
            kind, _ = _media_kind(link)
            kind = "file" if kind == "document" else kind
            attachment = {"type": kind, "payload": {"url": link, "is_reusable": False}}
            out.append({**head, "message": {"attachment": attachment}})
        return out

    async def _post(
        self, client: httpx.AsyncClient, url: str, token: str, payload: dict[str, Any]
    ) -> str:
        try:
            r = await client.post(url, json=payload, headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError as exc:
            raise transport_error(self.provider, exc) from exc
        if r.status_code != 200:
            raise self._refused(r)
        body = json_answer(self.provider, r)
        if self.channel_type == "whatsapp":
            messages = _dicts(body.get("messages"))
            message_id = _id(messages[0].get("id")) if messages else None
        else:
            message_id = _id(body.get("message_id"))
        if not message_id:
            raise ProviderError(self.provider, "the answer carries no message id", retryable=False)
        return message_id

    def _refused(self, r: httpx.Response) -> ProviderError:
        error: dict[str, Any] = {}
        with contextlib.suppress(ValueError):
            error = _dict(_dict(r.json()).get("error"))
        code = error.get("code")
        message = text_of(error.get("message"))
        detail = f"HTTP {r.status_code}"
        if code is not None:
            detail += f", Graph error {code}"
            if error.get("error_subcode") is not None:
                detail += f"/{error['error_subcode']}"
        if message:
            detail += f": {message}"
        retryable = (
            retryable_status(r.status_code)
            or error.get("is_transient") is True
            or (isinstance(code, int) and code in _RETRYABLE_CODES)
        )
        return ProviderError(self.provider, detail, retryable=retryable)
