"""Amazon SNS as an HTTP(S) subscriber meets it, on 127.0.0.1: a signing key with its
self-signed X.509 certificate, served as a ``.pem`` the way SNS serves
``SigningCertURL``; the ``SubscribeURL`` endpoint (``GET /?Action=ConfirmSubscription``);
and envelopes signed exactly as SNS signs them (written out here from AWS's
documentation, independently of the code under test)."""

from __future__ import annotations

import base64
import json
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from tests.live_server import FakeService

REGION = "us-east-1"
AWS_ACCOUNT = "123456789012"

# https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html
_NOTIFICATION = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
_SUBSCRIPTION = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]


def _signing_key() -> tuple[rsa.RSAPrivateKey, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return key, cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class FakeSns(FakeService):
    """Serves the certificate and records the subscription confirmations."""

    key: rsa.RSAPrivateKey = field(init=False)
    pem: bytes = field(init=False)
    cert_path: str = field(init=False)
    confirmed: list[dict[str, str]] = field(default_factory=list)
    cert_fetches: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.key, self.pem = _signing_key()
        self.cert_path = f"/SimpleNotificationService-{secrets.token_hex(16)}.pem"

    def handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                if parts.path == fake.cert_path:
                    with fake._lock:
                        fake.cert_fetches += 1
                    status, body, kind = 200, fake.pem, "application/x-x509-ca-cert"
                elif parts.path == "/" and query.get("Action") == "ConfirmSubscription":
                    with fake._lock:
                        fake.confirmed.append(query)
                    arn = query.get("TopicArn", "") + ":" + str(uuid.uuid4())
                    body = (
                        '<ConfirmSubscriptionResponse xmlns="http://sns.amazonaws.com/doc/'
                        f'2010-03-31/"><ConfirmSubscriptionResult><SubscriptionArn>{arn}'
                        "</SubscriptionArn></ConfirmSubscriptionResult>"
                        "</ConfirmSubscriptionResponse>"
                    ).encode()
                    status, kind = 200, "text/xml"
                else:
                    status, body, kind = 404, b"Not Found", "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler

    @property
    def cert_url(self) -> str:
        return self.url + self.cert_path

    def subscribe_url(self, topic_arn: str, token: str, *, base: str | None = None) -> str:
        query = urlencode({"Action": "ConfirmSubscription", "TopicArn": topic_arn, "Token": token})
        return f"{base or self.url}/?{query}"

    # -- envelopes ---------------------------------------------------------------------------

    def sign(self, env: dict[str, str]) -> dict[str, str]:
        """``env`` with SNS's Signature over its canonical fields (SHA1 for version 1,
        SHA256 for version 2)."""
        names = _NOTIFICATION if env["Type"] == "Notification" else _SUBSCRIPTION
        text = "".join(f"{n}\n{env[n]}\n" for n in names if n in env)
        # SNS's SignatureVersion 1 is SHA1: what it does, not a choice of ours.
        algorithm = hashes.SHA1() if env["SignatureVersion"] == "1" else hashes.SHA256()  # noqa: S303
        signature = self.key.sign(text.encode(), padding.PKCS1v15(), algorithm)
        return env | {"Signature": base64.b64encode(signature).decode()}

    def envelope(
        self,
        kind: str,
        topic: str,
        message: str,
        *,
        at: datetime | None = None,
        version: str = "1",
        cert_url: str | None = None,
        **extra: str,
    ) -> dict[str, str]:
        env = {
            "Type": kind,
            "MessageId": str(uuid.uuid4()),
            "TopicArn": topic_arn(topic),
            "Message": message,
            "Timestamp": (at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "SignatureVersion": version,
            "SigningCertURL": cert_url or self.cert_url,
        } | extra
        if kind == "Notification":
            env["UnsubscribeURL"] = (
                f"{self.url}/?Action=Unsubscribe&SubscriptionArn={env['TopicArn']}:{uuid.uuid4()}"
            )
        return self.sign(env)

    def sms(
        self,
        topic: str,
        sender: str,
        to: str,
        text: str,
        *,
        inbound_id: str | None = None,
        **kw: Any,
    ) -> dict[str, str]:
        """An inbound two-way SMS as AWS End User Messaging publishes it to SNS."""
        message = {
            "originationNumber": sender,
            "destinationNumber": to,
            "messageKeyword": "KEYWORD_" + AWS_ACCOUNT,
            "messageBody": text,
            "inboundMessageId": inbound_id or str(uuid.uuid4()),
            "previousPublishedMessageId": secrets.token_urlsafe(48),
        }
        return self.envelope("Notification", topic, json.dumps(message), **kw)

    def subscription(self, topic: str, *, subscribe_base: str | None = None) -> dict[str, str]:
        token = secrets.token_hex(64)
        url = self.subscribe_url(topic_arn(topic), token, base=subscribe_base)
        message = (
            f"You have chosen to subscribe to the topic {topic_arn(topic)}.\n"
            "To confirm the subscription, visit the SubscribeURL included in this message."
        )
        return self.envelope(
            "SubscriptionConfirmation", topic, message, Token=token, SubscribeURL=url
        )


def topic_arn(topic: str) -> str:
    return f"arn:aws:sns:{REGION}:{AWS_ACCOUNT}:{topic}"


def headers(env: dict[str, str]) -> dict[str, str]:
    """The headers SNS sends with a post."""
    return {
        "Content-Type": "text/plain; charset=UTF-8",
        "x-amz-sns-message-type": env["Type"],
        "x-amz-sns-message-id": env["MessageId"],
        "x-amz-sns-topic-arn": env["TopicArn"],
        "User-Agent": "Amazon Simple Notification Service Agent",
    }
