"""Encryption at rest for secrets the server must read back (SSO client secrets,
channel credentials): AES-256-GCM with rotatable keys.

A ciphertext is ``v1:<kid>:<base64url(nonce || ciphertext || tag)>``. The key id names
the key that encrypted it, so keys rotate without a flag day: configure the new key
first and keep the old ones after it; new data uses the first key, old data still
decrypts, and ``Cipher.needs_reencryption`` tells a re-encryption job what to rewrite.
The key id is derived from the key itself (a truncated SHA-256), so a configuration
cannot name the wrong key.

Keys come from ``SWITCHBOARD_ENCRYPTION_KEY`` (base64, comma separated, first one
active) or ``SWITCHBOARD_ENCRYPTION_KEY_FILE`` (the same text, one key per line
allowed). With neither, outside production, a key is generated once into
``data_dir/encryption.key`` with mode 0600, like the JWT signing keys.

Callers pass a ``context`` (for example ``"sso_oidc:<tenant id>"``): it is
authenticated with the ciphertext, so a value copied into another tenant's row or
another column does not decrypt.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import re
import secrets
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fastapi import Depends, Request

from app.config import Settings

VERSION = "v1"
KEY_BYTES = 32
NONCE_BYTES = 12
KEY_FILE_NAME = "encryption.key"


class DecryptionError(ValueError):
    """The value is malformed, was encrypted under an unknown key, or was altered."""


class KeyConfigurationError(RuntimeError):
    """The configured key material is missing or unusable (never echoes the key)."""


def _b64decode(text: str) -> bytes:
    text = text.strip()
    padded = text + "=" * (-len(text) % 4)
    altchars = b"-_" if ("-" in text or "_" in text) else None
    return base64.b64decode(padded, altchars=altchars, validate=True)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def key_id(key: bytes) -> str:
    """A short, stable identifier for a key (not secret: a truncated hash)."""
    return hashlib.sha256(b"switchboard-encryption-key-id:" + key).hexdigest()[:12]


def new_key() -> str:
    """A fresh key, base64-encoded, ready for SWITCHBOARD_ENCRYPTION_KEY."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def parse_keys(text: str) -> list[bytes]:
    """Keys from configuration text: base64 items separated by commas or newlines
    (``#`` starts a comment line). The first one is the active key."""
    keys: list[bytes] = []
    for number, item in enumerate(_items(text), start=1):
        try:
            key = _b64decode(item)
        except (binascii.Error, ValueError):
            raise KeyConfigurationError(f"encryption key #{number} is not base64") from None
        if len(key) != KEY_BYTES:
            raise KeyConfigurationError(
                f"encryption key #{number} is {len(key)} bytes; AES-256 needs {KEY_BYTES}"
            )
        keys.append(key)
    if not keys:
        raise KeyConfigurationError("no encryption key configured")
    return keys


def _items(text: str) -> list[str]:
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    return [i for i in re.split(r"[,\s]+", "\n".join(lines)) if i]


class Cipher:
    """AES-256-GCM over text. ``encrypt`` uses the first key; ``decrypt`` any of them."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise KeyConfigurationError("no encryption key configured")
        self._keys: dict[str, AESGCM] = {}
        for key in keys:
            if len(key) != KEY_BYTES:
                raise KeyConfigurationError(f"an encryption key must be {KEY_BYTES} bytes")
            kid = key_id(key)
            if kid in self._keys:
                raise KeyConfigurationError(f"encryption key {kid} is configured twice")
            self._keys[kid] = AESGCM(key)
        self.active_kid = key_id(keys[0])

    @property
    def key_ids(self) -> list[str]:
        return list(self._keys)

    @staticmethod
    def _aad(kid: str, context: str) -> bytes:
        return f"{VERSION}:{kid}:{context}".encode()

    def encrypt(self, plaintext: str, *, context: str = "") -> str:
        kid = self.active_kid
        nonce = os.urandom(NONCE_BYTES)  # 96-bit random nonce: fine far past 2^32 values
        sealed = self._keys[kid].encrypt(nonce, plaintext.encode(), self._aad(kid, context))
        return f"{VERSION}:{kid}:{_b64url(nonce + sealed)}"

    def decrypt(self, token: str, *, context: str = "") -> str:
        parts = token.split(":")
        if len(parts) != 3 or parts[0] != VERSION:
            raise DecryptionError("not a Switchboard ciphertext")
        _, kid, body = parts
        aead = self._keys.get(kid)
        if aead is None:
            raise DecryptionError(f"encrypted under key {kid}, which is not configured")
        try:
            raw = _b64decode(body)
        except (binascii.Error, ValueError):
            raise DecryptionError("malformed ciphertext") from None
        if len(raw) < NONCE_BYTES + 16:
            raise DecryptionError("malformed ciphertext")
        try:
            plain = aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], self._aad(kid, context))
        except InvalidTag:
            raise DecryptionError("ciphertext altered, or decrypted in the wrong context") from None
        return plain.decode()

    def needs_reencryption(self, token: str) -> bool:
        """True when ``token`` was encrypted under a key other than the active one."""
        parts = token.split(":")
        return len(parts) != 3 or parts[0] != VERSION or parts[1] != self.active_kid


def key_file_path(settings: Settings) -> Path:
    return settings.encryption_key_file or (settings.data_dir / KEY_FILE_NAME)


def load_key_text(settings: Settings) -> str:
    """The configured key text; generated into the key file outside production."""
    if settings.encryption_key is not None:
        return settings.encryption_key.get_secret_value()
    path = key_file_path(settings)
    if path.exists():
        return path.read_text()
    if settings.environment == "production":
        raise KeyConfigurationError(
            "no encryption key: set SWITCHBOARD_ENCRYPTION_KEY or SWITCHBOARD_ENCRYPTION_KEY_FILE"
        )
    return write_new_key_file(path)


def write_new_key_file(path: Path) -> str:
    """Create ``path`` (0600) holding a new key, unless another process just did; return
    the file's text either way. Linking a complete temporary file into place is atomic,
    so a concurrent reader never sees a half-written key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".encryption-key-")  # mode 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(new_key() + "\n")
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
    return path.read_text()


def load_cipher(settings: Settings) -> Cipher:
    return Cipher(parse_keys(load_key_text(settings)))


def app_cipher(request: Request) -> Cipher:
    """The application's cipher, loaded on first use and kept on ``app.state``."""
    cipher: Cipher | None = getattr(request.app.state, "cipher", None)
    if cipher is None:
        cipher = load_cipher(request.app.state.settings)
        request.app.state.cipher = cipher
    return cipher


CipherDep = Annotated[Cipher, Depends(app_cipher)]
