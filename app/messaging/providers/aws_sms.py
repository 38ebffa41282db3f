"""Amazon SNS SMS: two-way SMS through AWS End User Messaging (Pinpoint) numbers.

Inbound: the number's two-way SMS destination is an SNS topic, and that topic has an
HTTPS subscription to ``/v1/webhooks/sms/aws/{topic name}``: the channel's
``provider_account_id`` is the topic's name (the last component of its ARN), since the
channel holds no other place for it. SNS posts a JSON envelope
(https://docs.aws.amazon.com/sns/latest/dg/sns-message-and-json-formats.html) whose
``Message`` is the SMS as a JSON string (``originationNumber``, ``destinationNumber``,
``messageKeyword``, ``messageBody``, ``inboundMessageId``, ``previousPublishedMessageId``).

SNS signs the envelope with RSA (SHA1 for SignatureVersion 1, SHA256 for 2) over
"Name\\nvalue\\n" lines of fixed fields in a fixed order
(https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html), with
the key of the X.509 certificate at ``SigningCertURL``. That URL is the sender's word
until the signature verifies, so it must be https (http only when allowed: tests) on a
host matching the configured SNS host pattern and name a ``.pem``; certificates are
fetched once per URL (:meth:`AwsSmsAdapter.prepare`, before ``verify``) and kept in a
small in-memory cache. A ``SubscriptionConfirmation`` is confirmed by GETting its
``SubscribeURL`` once verified, and only when that URL is on an allowed host too (it is
the only URL we ever call because a request told us to).

SNS signs every topic's envelopes with the same certificate: a valid signature proves
only that *some* AWS account published, and a topic name is anyone's to take. So the
TopicArn's account must also be the account of the channel's own access key
(``sts:GetCallerIdentity``, which needs no IAM permission; cached per key, through the
same endpoint as SNS): else a same-named topic in an attacker's account could subscribe
our URL and post SMS "from" any number into the tenant's channel.

Outbound: ``sns:Publish`` with ``PhoneNumber`` through boto3 with the channel's access
key, in a worker thread. SNS reports SMS delivery only to CloudWatch Logs, never to a
webhook: statuses of this provider stop at ``sent``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qsl, urlsplit

import httpx
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from app.messaging.providers.base import (
    InboundMessage,
    Outgoing,
    ProviderError,
    SendResult,
    WebhookCheck,
    WebhookEvent,
    WebhookRefused,
    WebhookRequest,
    is_stale,
    required_credential,
    retryable_status,
)

PROVIDER = "aws"
DEFAULT_REGION = "us-east-1"

NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
SUBSCRIPTION_FIELDS = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)
_SIGNED_FIELDS = {
    "Notification": NOTIFICATION_FIELDS,
    "SubscriptionConfirmation": SUBSCRIPTION_FIELDS,
    "UnsubscribeConfirmation": SUBSCRIPTION_FIELDS,
}
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}
_CERT_MAX_BYTES = 65_536  # SNS's certificates are under 2 KB
_MAX_ID = 200

# botocore error codes a later attempt may get past (besides any 5xx or 429).
_RETRYABLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "KMSThrottling",
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
    }
)


# -- policy for URLs a request names --------------------------------------------------------


@dataclass(frozen=True)
class SnsPolicy:
    """Which URLs an SNS envelope may make us fetch: ``host`` must fully match the
    hostname; the scheme is https (or http when ``allow_http``, for tests)."""

    host: re.Pattern[str]
    allow_http: bool = False

    @classmethod
    def of(cls, host_pattern: str, allow_http: bool) -> SnsPolicy:
        return cls(re.compile(host_pattern), allow_http)

    def allows(self, url: str) -> bool:
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError on a malformed port
        except ValueError:
            return False
        schemes = ("https", "http") if self.allow_http else ("https",)
        if parts.scheme not in schemes or "@" in parts.netloc or not parts.hostname:
            return False
        return self.host.fullmatch(parts.hostname.lower()) is not None


class CertificateUnavailable(Exception):
    """SNS's certificate host did not answer (or answered 5xx): SNS should retry later."""


class AccountUnavailable(Exception):
    """STS did not say which AWS account the channel's key belongs to (try again later)."""


class SubscriptionNotConfirmed(Exception):
    """The SubscribeURL did not confirm the subscription (SNS retries the confirmation)."""


_K = TypeVar("_K")
_V = TypeVar("_V")


class _BoundedCache(Generic[_K, _V]):
    """At most ``capacity`` values, least recently used first out. Locked: the boto
    caches are shared by the worker threads that send and check owners."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._values: OrderedDict[_K, _V] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._values)

    def get(self, key: _K) -> _V | None:
        with self._lock:
            value = self._values.get(key)
            if value is not None:
                self._values.move_to_end(key)
            return value

    def put(self, key: _K, value: _V) -> None:
        with self._lock:
            self._values[key] = value
            self._values.move_to_end(key)
            while len(self._values) > self.capacity:
                self._values.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._values.clear()


class SigningCertificates:
    """SNS signing keys by certificate URL, at most ``capacity`` of them (least recently
    used first out). SNS signs with one certificate per region that it rotates rarely."""

    def __init__(self, capacity: int = 32) -> None:
        self._keys: _BoundedCache[str, RSAPublicKey] = _BoundedCache(capacity)

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, url: str) -> RSAPublicKey | None:
        return self._keys.get(url)

    def put(self, url: str, key: RSAPublicKey) -> None:
        self._keys.put(url, key)

    def clear(self) -> None:
        self._keys.clear()

    async def load(self, http: httpx.AsyncClient, url: str, now: datetime) -> RSAPublicKey:
        """The RSA key of the certificate at ``url`` (already allowed by the policy)."""
        cached = self.get(url)
        if cached is not None:
            return cached
        try:
            async with http.stream("GET", url, follow_redirects=False) as r:
                if r.status_code >= 500 or r.status_code == 429:
                    raise CertificateUnavailable(f"HTTP {r.status_code}")
                if r.status_code != 200:
                    raise WebhookRefused(
                        "signature-invalid", f"the signing certificate answered {r.status_code}"
                    )
                data = bytearray()
                async for chunk in r.aiter_bytes():
                    data += chunk
                    if len(data) > _CERT_MAX_BYTES:
                        raise WebhookRefused(
                            "signature-invalid", "the signing certificate is too large"
                        )
        except httpx.HTTPError as exc:
            raise CertificateUnavailable(type(exc).__name__) from None
        try:
            cert = x509.load_pem_x509_certificate(bytes(data))
        except ValueError:
            raise WebhookRefused(
                "signature-invalid", "the signing certificate is not a PEM certificate"
            ) from None
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise WebhookRefused("signature-invalid", "the signing certificate is not valid now")
        key = cert.public_key()
        if not isinstance(key, RSAPublicKey):
            raise WebhookRefused("signature-invalid", "the signing certificate is not RSA")
        self.put(url, key)
        return key


# -- the envelope ---------------------------------------------------------------------------


def envelope(request: WebhookRequest) -> dict[str, str]:
    """The SNS envelope's string fields; WebhookRefused("malformed") if it is none."""
    body = request.json()
    out: dict[str, str] = {}
    for name, value in body.items():
        if isinstance(value, str):
            out[name] = value
        elif value is not None and name in SUBSCRIPTION_FIELDS + NOTIFICATION_FIELDS:
            raise WebhookRefused("malformed", f"{name} is not a string")
    kind = out.get("Type")
    if kind not in _SIGNED_FIELDS:
        raise WebhookRefused("malformed", "Type is not an SNS message type")
    for name in ("MessageId", "TopicArn", "Timestamp", "Signature", "SigningCertURL"):
        if not out.get(name):
            raise WebhookRefused("malformed", f"no {name}")
    return out


def string_to_sign(env: Mapping[str, str]) -> bytes:
    """The canonical text SNS signs: each present field of the type's list, in its
    order, as ``Name\\nvalue\\n`` (Subject only when the notification has one)."""
    fields = _SIGNED_FIELDS.get(env.get("Type", ""))
    if fields is None:
        raise WebhookRefused("malformed", "Type is not an SNS message type")
    lines = []
    for name in fields:
        value = env.get(name)
        if value is None:
            if name == "Subject":
                continue
            raise WebhookRefused("malformed", f"no {name}")
        lines.append(f"{name}\n{value}\n")
    return "".join(lines).encode()


def parse_timestamp(value: str) -> datetime:
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise WebhookRefused("malformed", "Timestamp is not an ISO 8601 time") from None
    if at.tzinfo is None:
        raise WebhookRefused("malformed", "Timestamp has no time zone")
    return at.astimezone(UTC)


def topic_account(topic_arn: str) -> str:
    """``arn:aws:sns:us-east-1:123456789012:inbound-sms`` -> ``123456789012``."""
    topic_name(topic_arn)
    return topic_arn.split(":")[4]


def topic_name(topic_arn: str) -> str:
    """``arn:aws:sns:us-east-1:123456789012:inbound-sms`` -> ``inbound-sms``."""
    parts = topic_arn.split(":")
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sns" or not parts[5]:
        raise WebhookRefused("malformed", "TopicArn is not an SNS topic ARN")
    return parts[5]


# -- sending: where SNS is ------------------------------------------------------------------


def sns_base(region: str, endpoint_url: str | None) -> str:
    """The ``Outgoing.base_url`` of this provider: the endpoint (empty: the region's
    own) and, in the fragment, the region requests are signed for."""
    return f"{(endpoint_url or '').rstrip('/')}#region={region}"


def parse_sns_base(base_url: str) -> tuple[str | None, str]:
    endpoint, _, fragment = base_url.partition("#")
    region = dict(parse_qsl(fragment)).get("region") or DEFAULT_REGION
    return endpoint or None, region


_BotoKey = tuple[str | None, str, str, str]


def _boto_key(endpoint: str | None, region: str, key_id: str, secret: str) -> _BotoKey:
    """A hash of the secret, not the secret, so that a rotated secret misses."""
    return (endpoint, region, key_id, hashlib.sha256(secret.encode()).hexdigest())


def _boto_client(
    service: str,
    endpoint: str | None,
    region: str,
    key_id: str,
    secret: str,
    *,
    attempts: int,
    read_timeout: int,
) -> Any:
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(
        aws_access_key_id=key_id, aws_secret_access_key=secret, region_name=region
    )
    return session.client(
        service,
        endpoint_url=endpoint,
        config=Config(
            retries={"total_max_attempts": attempts, "mode": "standard"},
            connect_timeout=5,
            read_timeout=read_timeout,
        ),
    )


_CLIENTS: _BoundedCache[_BotoKey, Any] = _BoundedCache(32)


def _sns_client(endpoint: str | None, region: str, key_id: str, secret: str) -> Any:
    """A boto3 SNS client per (endpoint, region, access key), reused: making one costs
    milliseconds, and boto3 clients are thread-safe."""
    key = _boto_key(endpoint, region, key_id, secret)
    client = _CLIENTS.get(key)
    if client is None:
        # The dispatcher retries with back-off; one attempt per send here.
        client = _boto_client("sns", endpoint, region, key_id, secret, attempts=1, read_timeout=15)
        _CLIENTS.put(key, client)
    return client


_ACCOUNTS: _BoundedCache[_BotoKey, str] = _BoundedCache(256)
_IDENTITY_RETRYABLE = _RETRYABLE_CODES | {"RequestExpired"}


def _caller_account(endpoint: str | None, region: str, key_id: str, secret: str) -> str:
    """The AWS account of an access key, asked of STS once per key (and secret hash)."""
    key = _boto_key(endpoint, region, key_id, secret)
    account = _ACCOUNTS.get(key)
    if account is None:
        sts = _boto_client("sts", endpoint, region, key_id, secret, attempts=2, read_timeout=10)
        account = str(sts.get_caller_identity()["Account"])
        _ACCOUNTS.put(key, account)
    return account


def _publish(endpoint: str | None, region: str, key_id: str, secret: str, **kw: Any) -> Any:
    return _sns_client(endpoint, region, key_id, secret).publish(**kw)


def _scrub(text: str, *secrets: str) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def publish_error(exc: BotoCoreError | ClientError, secret: str) -> ProviderError:
    """A botocore failure as a ProviderError. Throttling, 5xx and connection failures
    are retryable; the rest (InvalidParameter, OptedOut, AuthorizationError, bad
    credentials) never succeed as they stand."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error") or {}
        code = str(error.get("Code") or "Unknown")
        message = str(error.get("Message") or "")
        status = int((exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
        retryable = code in _RETRYABLE_CODES or (status > 0 and retryable_status(status))
        detail = f"SNS {code}" + (f": {message}" if message else "")
        return ProviderError(PROVIDER, _scrub(detail, secret), retryable=retryable)
    if isinstance(exc, BotoConnectionError | HTTPClientError):
        return ProviderError(PROVIDER, f"no answer ({type(exc).__name__})", retryable=True)
    # NoCredentialsError, ParamValidationError...: only the type (messages may echo input).
    return ProviderError(PROVIDER, f"SNS refused the call ({type(exc).__name__})", retryable=False)


# -- the adapter ----------------------------------------------------------------------------


class AwsSmsAdapter:
    channel_type = "sms"
    provider = PROVIDER

    def __init__(self, certificates: SigningCertificates | None = None) -> None:
        self.certificates = certificates or SigningCertificates()

    # -- webhooks --------------------------------------------------------------------------

    def accounts(self, request: WebhookRequest) -> list[str]:
        try:
            return [topic_name(envelope(request)["TopicArn"])]
        except WebhookRefused:
            return []

    def handshake(self, request: WebhookRequest, check: WebhookCheck) -> str:
        raise WebhookRefused("malformed", "SNS confirms subscriptions by POST, not GET")

    async def prepare(
        self, request: WebhookRequest, policy: SnsPolicy, http: httpx.AsyncClient, now: datetime
    ) -> None:
        """Fetch (or find cached) the certificate the envelope names, when the policy
        allows its URL. Must run right before :meth:`verify`, which uses it."""
        env = envelope(request)
        url = env["SigningCertURL"]
        if not policy.allows(url) or not urlsplit(url).path.endswith(".pem"):
            raise WebhookRefused("signature-invalid", "SigningCertURL is not an SNS certificate")
        await self.certificates.load(http, url, now)

    def verify(self, request: WebhookRequest, check: WebhookCheck) -> None:
        env = envelope(request)
        algorithm = _HASHES.get(env.get("SignatureVersion", ""))
        if algorithm is None:
            raise WebhookRefused("signature-invalid", "SignatureVersion is not 1 or 2")
        key = self.certificates.get(env["SigningCertURL"])
        if key is None:
            raise WebhookRefused("signature-invalid", "the signing certificate is not loaded")
        try:
            signature = base64.b64decode(env["Signature"], validate=True)
        except (binascii.Error, ValueError):
            raise WebhookRefused("signature-invalid", "Signature is not base64") from None
        try:
            key.verify(signature, string_to_sign(env), padding.PKCS1v15(), algorithm())
        except InvalidSignature:
            raise WebhookRefused("signature-invalid", "Signature does not match") from None
        if is_stale(parse_timestamp(env["Timestamp"]), check.now, check.max_age):
            raise WebhookRefused("stale", "Timestamp is outside the allowed window")

    def parse(
        self,
        request: WebhookRequest,
        *,
        account_id: str,
        credentials: Mapping[str, str],
        received_at: datetime,
    ) -> list[WebhookEvent]:
        env = envelope(request)
        # Signed by AWS, but for any topic: only the channel's own topic may post here.
        if topic_name(env["TopicArn"]) != account_id:
            raise WebhookRefused("signature-invalid", "TopicArn names another topic")
        if env["Type"] != "Notification":
            return []  # (un)subscription confirmations carry no message
        try:
            sms = json.loads(env.get("Message", ""))
        except ValueError:
            raise WebhookRefused("malformed", "Message is not JSON") from None
        if not isinstance(sms, dict):
            raise WebhookRefused("malformed", "Message is not a JSON object")
        sender = sms.get("originationNumber")
        text = sms.get("messageBody")
        if not isinstance(sender, str) or not sender:
            raise WebhookRefused("malformed", "Message has no originationNumber")
        if not isinstance(text, str):
            raise WebhookRefused("malformed", "Message has no messageBody")
        message_id = sms.get("inboundMessageId")
        if not isinstance(message_id, str) or not message_id:
            message_id = env["MessageId"]
        if len(message_id) > _MAX_ID:
            raise WebhookRefused("malformed", "inboundMessageId is too long")
        to = sms.get("destinationNumber")
        return [
            InboundMessage(
                provider_message_id=message_id,
                sender_id=sender,
                account_id=account_id,
                text=text,
                sent_at=parse_timestamp(env["Timestamp"]),
                to_address=to if isinstance(to, str) and to else None,
            )
        ]

    async def check_owner(
        self, request: WebhookRequest, credentials: Mapping[str, str], base_url: str
    ) -> None:
        """Refuse a (verified) envelope whose topic is not in the AWS account of the
        channel's access key; :class:`AccountUnavailable` when STS cannot say."""
        env = envelope(request)
        account = topic_account(env["TopicArn"])
        key_id = credentials.get("access_key_id") or ""
        secret = credentials.get("secret_access_key") or ""
        if not key_id or not secret:
            raise WebhookRefused("signature-invalid", "the channel has no AWS access key")
        endpoint, region = parse_sns_base(base_url)
        try:
            owner = await asyncio.to_thread(_caller_account, endpoint, region, key_id, secret)
        except ClientError as exc:
            code = str((exc.response.get("Error") or {}).get("Code") or "")
            status = int((exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
            if code in _IDENTITY_RETRYABLE or (status > 0 and retryable_status(status)):
                raise AccountUnavailable(code or f"HTTP {status}") from None
            raise WebhookRefused(
                "signature-invalid", "the channel's AWS access key names no account"
            ) from None
        except BotoCoreError as exc:
            raise AccountUnavailable(type(exc).__name__) from None
        if owner != account:
            raise WebhookRefused(
                "signature-invalid", "TopicArn is in another AWS account than the channel's key"
            )

    async def confirm_subscription(
        self, request: WebhookRequest, policy: SnsPolicy, http: httpx.AsyncClient
    ) -> bool:
        """For a verified SubscriptionConfirmation: GET its SubscribeURL (True), when
        that URL is on an allowed host and asks for ConfirmSubscription. Other types:
        nothing to do (False)."""
        env = envelope(request)
        if env["Type"] != "SubscriptionConfirmation":
            return False
        url = env.get("SubscribeURL", "")
        query = dict(parse_qsl(urlsplit(url).query)) if url else {}
        if not policy.allows(url) or query.get("Action") != "ConfirmSubscription":
            raise WebhookRefused("signature-invalid", "SubscribeURL is not an SNS subscription URL")
        try:
            r = await http.get(url, follow_redirects=False)
        except httpx.HTTPError as exc:
            raise SubscriptionNotConfirmed(type(exc).__name__) from None
        if r.status_code != 200:
            raise SubscriptionNotConfirmed(f"HTTP {r.status_code}")
        return True

    # -- sending ---------------------------------------------------------------------------

    async def send(self, client: httpx.AsyncClient, message: Outgoing) -> SendResult:
        key_id = required_credential(self.provider, message.credentials, "access_key_id")
        secret = required_credential(self.provider, message.credentials, "secret_access_key")
        message.require_recipient(self.provider)
        message.require_content(self.provider)
        # SMS carries no files: their (presigned) links go in the text.
        text = "\n".join(
            [message.text, *message.media_urls] if message.text else message.media_urls
        )
        attributes = {"AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": "Transactional"}}
        if message.sender:
            attributes["AWS.MM.SMS.OriginationNumber"] = {
                "DataType": "String",
                "StringValue": message.sender,
            }
        endpoint, region = parse_sns_base(message.base_url)
        try:
            answer = await asyncio.to_thread(
                _publish,
                endpoint,
                region,
                key_id,
                secret,
                PhoneNumber=message.to,
                Message=text,
                MessageAttributes=attributes,
            )
        except (BotoCoreError, ClientError) as exc:
            raise publish_error(exc, secret) from None
        message_id = answer.get("MessageId") if isinstance(answer, dict) else None
        if not isinstance(message_id, str) or not message_id:
            raise ProviderError(self.provider, "the answer carries no MessageId", retryable=False)
        return SendResult(provider_message_id=message_id, status="sent")
