"""What every messaging provider adapter speaks: the webhook request it checks and
reads, the events it finds there, and the send it makes.

Adapters are pure: no database, no settings. Ingress finds the channel (its provider
account, decrypted credentials and webhook secret), then calls ``verify`` before it
believes anything in the request, then ``parse``. Outbound dispatch calls ``send``
with an ``httpx.AsyncClient`` it owns. Adapters raise only ``WebhookRefused`` (a
request we must not act on) and ``ProviderError`` (a send that did not go through).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol
from urllib.parse import parse_qsl, urlsplit

import httpx

ReceiptStatus = Literal["sent", "delivered", "read", "failed"]
RefusalCode = Literal["signature-invalid", "stale", "replayed", "malformed"]

# Long enough for any reason a provider gives, short enough for the messages table.
ERROR_MAX = 500


# -- the request ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookRequest:
    """A provider's HTTP request as ingress received it. ``url`` is the full public URL
    the provider called (scheme, host, path and query): Twilio signs it, so behind a
    proxy it must be rebuilt from the public base URL, not from the socket."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes = b""

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        for key, value in self.headers.items():
            if key.lower() == wanted:
                return value
        return None

    @property
    def query(self) -> dict[str, str]:
        """The query parameters (the first value of a repeated one)."""
        out: dict[str, str] = {}
        for key, value in parse_qsl(urlsplit(self.url).query, keep_blank_values=True):
            out.setdefault(key, value)
        return out

    def form(self) -> list[tuple[str, str]]:
        """The body as ``application/x-www-form-urlencoded`` pairs, in order."""
        try:
            text = self.body.decode("utf-8")
        except UnicodeDecodeError:
            raise WebhookRefused("malformed", "the form body is not UTF-8") from None
        return parse_qsl(text, keep_blank_values=True, strict_parsing=False)

    def json(self) -> dict[str, Any]:
        try:
            body = json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            raise WebhookRefused("malformed", "the body is not JSON") from None
        if not isinstance(body, dict):
            raise WebhookRefused("malformed", "the body is not a JSON object")
        return body


class WebhookRefused(Exception):
    """A webhook request we must not act on. ``code`` is stable (signature-invalid,
    stale, replayed, malformed); ``reason`` is for the log and the 4xx answer and never
    holds a secret or an expected signature."""

    def __init__(self, code: RefusalCode, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code: RefusalCode = code
        self.reason = reason


# -- what a webhook carries ----------------------------------------------------------------


@dataclass(frozen=True)
class MediaRef:
    """An attachment as the provider names it: a URL to fetch (Twilio, Messenger,
    WeChat images) or a media id to resolve through the provider's API (WhatsApp Cloud
    API, WeChat)."""

    url: str | None = None
    media_id: str | None = None
    content_type: str | None = None
    filename: str | None = None


@dataclass(frozen=True)
class InboundMessage:
    """A customer's message. ``sender_id`` is the customer at the provider (E.164 for
    SMS, the wa_id digits for WhatsApp, the openid for WeChat, the PSID for Messenger);
    ``account_id`` is the business account the webhook names (Twilio AccountSid, Meta
    phone_number_id or page id, WeChat ToUserName)."""

    provider_message_id: str
    sender_id: str
    account_id: str
    text: str
    sent_at: datetime
    media: list[MediaRef] = field(default_factory=list)
    display_name: str | None = None
    # Our address the customer wrote to, where it is not ``account_id`` (the Twilio
    # number, E.164 without a ``whatsapp:`` prefix): replies go out from it.
    to_address: str | None = None


@dataclass(frozen=True)
class DeliveryReceipt:
    """What became of a message we sent. Messenger's read receipts (and its delivery
    receipts without mids) name no message: ``provider_message_id`` is None and
    ``watermark`` says that everything sent to that customer up to then is covered."""

    provider_message_id: str | None
    status: ReceiptStatus
    at: datetime
    error: str | None = None
    account_id: str | None = None
    recipient_id: str | None = None  # the customer, where the provider says
    watermark: datetime | None = None


WebhookEvent = InboundMessage | DeliveryReceipt


# -- sending -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str
    status: ReceiptStatus  # "sent": the provider accepted it


class ProviderError(Exception):
    """A send that did not go through. ``retryable``: the same send may succeed later
    (the provider was down, busy or rate-limiting us, or the network failed); else it
    never will as it stands (bad number, bad credentials, outside the provider's reply
    window). ``detail`` never holds a credential or a token."""

    def __init__(self, provider: str, detail: str, *, retryable: bool) -> None:
        detail = detail[:ERROR_MAX]
        super().__init__(f"{provider}: {detail}")
        self.provider = provider
        self.detail = detail
        self.retryable = retryable


def transport_error(provider: str, exc: httpx.HTTPError) -> ProviderError:
    """A request that got no HTTP answer. Only the exception's type: its message may
    hold the URL, and some providers (WeChat) put tokens in URLs. A timeout after the
    request went out may mean the message was sent: a retry may then send it twice,
    which none of these providers lets us prevent (no idempotency keys)."""
    return ProviderError(provider, f"no answer ({type(exc).__name__})", retryable=True)


@dataclass(frozen=True)
class WebhookCheck:
    """What a webhook request is checked against: the channel's (decrypted) credentials
    and webhook secret, the time now, and how far from it a signed time may be."""

    credentials: Mapping[str, str]
    webhook_secret: str | None
    now: datetime
    max_age: timedelta


@dataclass(frozen=True)
class OutgoingTemplate:
    """An approved WhatsApp message template: its name, the translation's language code
    and the values of its body's placeholders, in order. ``content_sid``: Twilio's id of
    it, as the channel declares it (Twilio sends by id, not by name)."""

    name: str
    language: str
    parameters: tuple[str, ...] = ()
    content_sid: str | None = None


@dataclass(frozen=True)
class Outgoing:
    """One send: ``text`` (and the files at ``media_urls``) to the customer ``to``,
    through the provider API at ``base_url`` with the channel's account and credentials.
    ``sender`` is the channel's own address where the provider needs one (the Twilio
    number or messaging service). ``template`` (WhatsApp) goes instead of the text and
    files; ``messaging_tag`` (Messenger) marks a message sent after the 24-hour window."""

    base_url: str
    account_id: str
    credentials: Mapping[str, str]
    to: str
    text: str
    media_urls: list[str]
    status_callback: str | None
    sender: str | None = None
    template: OutgoingTemplate | None = None
    messaging_tag: str | None = None

    def require_recipient(self, provider: str) -> None:
        if not self.to:
            raise ProviderError(provider, "no recipient", retryable=False)

    def require_content(self, provider: str) -> None:
        if not self.text and not self.media_urls and self.template is None:
            raise ProviderError(provider, "nothing to send", retryable=False)


class ProviderAdapter(Protocol):
    """One provider for one channel type."""

    channel_type: str
    provider: str

    def accounts(self, request: WebhookRequest) -> list[str]:
        """The business account ids the request names, read WITHOUT verification, so
        that ingress can find the channel whose secret verifies it. Empty if none."""
        ...

    def handshake(self, request: WebhookRequest, check: WebhookCheck) -> str:
        """A provider's GET that proves we own the URL: the text to answer with.
        Raises WebhookRefused when the proof fails or the provider has none."""
        ...

    def verify(self, request: WebhookRequest, check: WebhookCheck) -> None:
        """Raise WebhookRefused unless the request is signed by the account's secret
        (and, where the signature covers a time, recent)."""
        ...

    def parse(
        self,
        request: WebhookRequest,
        *,
        account_id: str,
        credentials: Mapping[str, str],
        received_at: datetime,
    ) -> list[WebhookEvent]:
        """The events of a verified request that belong to ``account_id`` (the
        channel's provider account). Raises WebhookRefused("malformed")."""
        ...

    async def send(self, client: httpx.AsyncClient, message: Outgoing) -> SendResult:
        """Send ``message``. Raises ProviderError."""
        ...


# -- helpers -------------------------------------------------------------------------------


def is_stale(at: datetime, now: datetime, max_age: timedelta) -> bool:
    """Whether a signed time is further than ``max_age`` from ``now`` either way (a time
    in the future beyond the allowed clock skew is as suspect as an old one)."""
    return abs(now - at) > max_age


def from_unix(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def parse_unix(value: Any, what: str, *, millis: bool = False) -> datetime:
    """A provider's unix time (seconds, or milliseconds) as an aware datetime;
    WebhookRefused("malformed") when it is not a sane number."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise WebhookRefused("malformed", f"{what} is not a unix time") from None
    if millis:
        number /= 1000
    # 2000-01-01 .. 2100-01-01: anything else is garbage, and fromtimestamp would
    # overflow on the absurd ones.
    if not 946_684_800 <= number <= 4_102_444_800:
        raise WebhookRefused("malformed", f"{what} is out of range")
    return from_unix(number)


def required_credential(provider: str, credentials: Mapping[str, str], name: str) -> str:
    value = credentials.get(name)
    if not value:
        raise ProviderError(provider, f"the channel has no {name} credential", retryable=False)
    return value


def webhook_credential(credentials: Mapping[str, str], name: str) -> str:
    value = credentials.get(name)
    if not value:
        # The channel cannot verify anything: refuse rather than accept unsigned input.
        raise WebhookRefused("signature-invalid", f"the channel has no {name} to verify with")
    return value


def generated_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(16)}"


def json_answer(provider: str, response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise ProviderError(
            provider,
            f"HTTP {response.status_code} with a body that is not JSON",
            retryable=response.status_code >= 500,
        ) from None
    if not isinstance(body, dict):
        raise ProviderError(provider, "answer is not a JSON object", retryable=False)
    return body


def retryable_status(status: int) -> bool:
    return status >= 500 or status in (408, 429)


def text_of(value: Any) -> str | None:
    return value if isinstance(value, str) else None
