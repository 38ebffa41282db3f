"""Opaque credentials (API keys, refresh tokens, verification tokens).

A credential is ``<kind>_<base64url(tenant_id || record_id)>_<secret>``. It names its
own tenant, so the server binds row-level security *before* it reads the record, and
no lookup ever needs to cross tenants. Only a SHA-256 of the 256-bit secret is stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass

KINDS = ("sbk", "sbr", "sbv", "sbi")  # API key, refresh, verification, invitation


@dataclass(frozen=True)
class ParsedCredential:
    kind: str
    tenant_id: uuid.UUID
    record_id: uuid.UUID
    secret: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def issue(kind: str, tenant_id: uuid.UUID, record_id: uuid.UUID) -> tuple[str, str]:
    """Return (credential, secret_hash)."""
    assert kind in KINDS
    secret = secrets.token_urlsafe(32)
    ident = _b64(record_id.bytes + tenant_id.bytes)
    return f"{kind}_{ident}_{secret}", hash_secret(secret)


_IDENT_LEN = 43  # base64url of 32 bytes, unpadded
_SECRET_LEN = 43  # secrets.token_urlsafe(32)
_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def parse(credential: str, kind: str) -> ParsedCredential | None:
    """Fixed-width parse ('_' is also a base64url character, so no splitting on it)."""
    head = len(kind) + 1
    if len(credential) != head + _IDENT_LEN + 1 + _SECRET_LEN or not credential.startswith(
        kind + "_"
    ):
        return None
    ident = credential[head : head + _IDENT_LEN]
    sep = credential[head + _IDENT_LEN]
    secret = credential[head + _IDENT_LEN + 1 :]
    if sep != "_" or not set(ident) <= _B64URL or not set(secret) <= _B64URL:
        return None
    try:
        raw = base64.urlsafe_b64decode(ident + "=")
    except (ValueError, TypeError):
        return None
    if len(raw) != 32:
        return None
    return ParsedCredential(kind, uuid.UUID(bytes=raw[16:]), uuid.UUID(bytes=raw[:16]), secret)


def display_prefix(credential: str) -> str:
    """The visible part shown in listings (kind plus the record id's leading chars)."""
    return credential[:16]
