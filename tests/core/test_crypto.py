"""Encryption at rest: AES-256-GCM with key ids, rotation and a generated dev key."""

from __future__ import annotations

import base64
import os
import stat

import pytest

from app.config import Settings
from app.core import crypto
from app.core.crypto import Cipher, DecryptionError, KeyConfigurationError


def _key() -> bytes:
    return os.urandom(32)


def test_roundtrip_and_format():
    c = Cipher([_key()])
    token = c.encrypt("s3cret ✓")
    version, kid, _ = token.split(":")
    assert version == "v1" and kid == c.active_kid and "s3cret" not in token
    assert c.decrypt(token) == "s3cret ✓"
    # A fresh nonce every time: equal plaintexts do not give equal ciphertexts.
    assert c.encrypt("same") != c.encrypt("same")


def test_tampering_is_detected():
    c = Cipher([_key()])
    version, kid, body = c.encrypt("value").split(":")
    raw = bytearray(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    raw[-1] ^= 1
    forged = f"{version}:{kid}:{base64.urlsafe_b64encode(bytes(raw)).rstrip(b'=').decode()}"
    with pytest.raises(DecryptionError):
        c.decrypt(forged)
    for junk in ("", "plain", "v1:x", "v2:abc:def", f"v1:{kid}:!!!", f"v1:{kid}:AAAA"):
        with pytest.raises(DecryptionError):
            c.decrypt(junk)


def test_context_binds_the_ciphertext():
    c = Cipher([_key()])
    token = c.encrypt("value", context="tenant-a")
    assert c.decrypt(token, context="tenant-a") == "value"
    with pytest.raises(DecryptionError):
        c.decrypt(token, context="tenant-b")
    with pytest.raises(DecryptionError):
        c.decrypt(token)


def test_rotation_old_keys_decrypt_new_key_encrypts():
    old, new = _key(), _key()
    before = Cipher([old])
    token = before.encrypt("value")
    after = Cipher([new, old])
    assert after.decrypt(token) == "value"
    assert after.needs_reencryption(token)
    fresh = after.encrypt("value")
    assert fresh.split(":")[1] == crypto.key_id(new) and not after.needs_reencryption(fresh)
    # Once the old key is dropped, its data no longer decrypts (and says why).
    with pytest.raises(DecryptionError, match="not configured"):
        Cipher([new]).decrypt(token)


def test_key_configuration_is_checked():
    k = base64.b64encode(_key()).decode()
    assert len(crypto.parse_keys(f"# active first\n{k}\n")) == 1
    url_safe = base64.urlsafe_b64encode(_key()).rstrip(b"=").decode()
    assert len(crypto.parse_keys(f"{k}, {url_safe}")) == 2
    with pytest.raises(KeyConfigurationError, match="16 bytes"):
        crypto.parse_keys(base64.b64encode(os.urandom(16)).decode())
    with pytest.raises(KeyConfigurationError, match="not base64"):
        crypto.parse_keys("not*base64")
    with pytest.raises(KeyConfigurationError):
        crypto.parse_keys("  ")
    with pytest.raises(KeyConfigurationError, match="twice"):
        Cipher(crypto.parse_keys(f"{k},{k}"))


def test_key_from_settings(tmp_path):
    k1, k2 = crypto.new_key(), crypto.new_key()
    s = Settings(data_dir=tmp_path, encryption_key=f"{k1},{k2}")  # type: ignore[arg-type]
    c = crypto.load_cipher(s)
    assert c.active_kid == crypto.key_id(base64.b64decode(k1))
    assert not (tmp_path / "encryption.key").exists()

    key_file = tmp_path / "mounted.key"
    key_file.write_text(k2 + "\n")
    c = crypto.load_cipher(Settings(data_dir=tmp_path, encryption_key_file=key_file))
    assert c.active_kid == crypto.key_id(base64.b64decode(k2))


def test_generated_once_with_mode_0600_outside_production(tmp_path):
    s = Settings(data_dir=tmp_path / "data", environment="embedded")
    first = crypto.load_cipher(s)
    path = tmp_path / "data" / "encryption.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = first.encrypt("kept across restarts")
    again = crypto.load_cipher(s)
    assert again.active_kid == first.active_kid
    assert again.decrypt(token) == "kept across restarts"
    assert [p.name for p in path.parent.iterdir()] == ["encryption.key"]  # no temp left


def test_concurrent_generation_keeps_the_first_key(tmp_path):
    path = tmp_path / "encryption.key"
    first = crypto.write_new_key_file(path)
    second = crypto.write_new_key_file(path)  # another process racing: it adopts ours
    assert first == second == path.read_text()


def test_production_requires_a_configured_key(tmp_path):
    s = Settings(data_dir=tmp_path, environment="production")
    with pytest.raises(KeyConfigurationError, match="SWITCHBOARD_ENCRYPTION_KEY"):
        crypto.load_cipher(s)
    assert not (tmp_path / "encryption.key").exists()
