"""Visitor tokens: what the widget holds after ``POST /v1/widget/sessions``.

``vt1.<kid>.<payload>.<signature>``: the payload is base64url JSON naming the tenant,
the web chat channel, the customer, the visitor's identity and visitor id, and when the
token was issued and expires; the signature is HMAC-SHA256 over everything before it,
keyed with a secret derived (HKDF-SHA256) from an encryption key of
:mod:`app.core.crypto`, never the key itself. ``kid`` names the key, so tokens survive a
key rotation while the old key stays configured. There is no algorithm field to choose
(nothing like a JWT's ``alg: none``), and signatures are compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.config import Settings
from app.core.crypto import key_id, load_key_text, parse_keys

PREFIX = "vt1"
MAX_TOKEN_CHARS = 2048
_INFO = b"switchboard widget visitor token v1"


@dataclass(frozen=True)
class VisitorClaims:
    tenant_id: uuid.UUID
    channel_id: uuid.UUID
    customer_id: uuid.UUID
    identity_id: uuid.UUID
    visitor_id: str
    issued_at: int
    expires_at: int

    def expired(self, now: float | None = None) -> bool:
        return self.expires_at <= (time.time() if now is None else now)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _derive(key: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(key)


class VisitorTokens:
    """Issues tokens with the active key's secret; verifies with any configured key's."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("no encryption key")
        self._secrets = {key_id(k): _derive(k) for k in keys}
        self._active = key_id(keys[0])

    def _sign(self, secret: bytes, signed: str) -> str:
        return _b64url(hmac.new(secret, signed.encode("ascii"), hashlib.sha256).digest())

    def issue(self, claims: VisitorClaims) -> str:
        body: dict[str, Any] = {
            "tid": str(claims.tenant_id),
            "ch": str(claims.channel_id),
            "cus": str(claims.customer_id),
            "idn": str(claims.identity_id),
            "vid": claims.visitor_id,
            "iat": claims.issued_at,
            "exp": claims.expires_at,
        }
        payload = _b64url(json.dumps(body, separators=(",", ":")).encode())
        signed = f"{PREFIX}.{self._active}.{payload}"
        return f"{signed}.{self._sign(self._secrets[self._active], signed)}"

    def verify(self, token: str) -> VisitorClaims | None:
        """The claims of a token we signed (expired or not: see ``expired``), or None."""
        if not token or len(token) > MAX_TOKEN_CHARS or not token.isascii():
            return None
        parts = token.split(".")
        if len(parts) != 4 or parts[0] != PREFIX:
            return None
        _, kid, payload, signature = parts
        secret = self._secrets.get(kid)
        if secret is None:
            return None
        expected = self._sign(secret, f"{PREFIX}.{kid}.{payload}")
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            return None
        try:
            body = json.loads(_unb64url(payload))
            return VisitorClaims(
                tenant_id=uuid.UUID(body["tid"]),
                channel_id=uuid.UUID(body["ch"]),
                customer_id=uuid.UUID(body["cus"]),
                identity_id=uuid.UUID(body["idn"]),
                visitor_id=str(body["vid"]),
                issued_at=int(body["iat"]),
                expires_at=int(body["exp"]),
            )
        except (ValueError, KeyError, TypeError, binascii.Error):
            return None


def visitor_tokens(state: Any, settings: Settings) -> VisitorTokens:
    """The application's token signer (``app.state.visitor_tokens``), built on first use."""
    tokens: VisitorTokens | None = getattr(state, "visitor_tokens", None)
    if tokens is None:
        tokens = VisitorTokens(parse_keys(load_key_text(settings)))
        state.visitor_tokens = tokens
    return tokens
