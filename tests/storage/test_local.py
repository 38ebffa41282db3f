"""The local backend as a store: files encrypted at rest and bound to their key,
private permissions, key rotation, and the URL tokens it signs."""

from __future__ import annotations

import json
import secrets
import shutil
import stat
import time
import uuid
from pathlib import Path

import pytest

from app.core.crypto import DecryptionError
from app.storage.base import InvalidKey, ObjectMissing, tenant_key
from app.storage.local import (
    LocalObjectStore,
    TokenExpired,
    TokenInvalid,
    UrlClaims,
    url_signing_secret,
)

TENANT = uuid.uuid4()
SECRET_TEXT = b"card 4111 1111 1111 1111, expires 12/29 -- " * 20


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


async def test_round_trip(local_store: LocalObjectStore) -> None:
    key = tenant_key(TENANT, "attachments", "note.txt")
    await local_store.put(key, SECRET_TEXT, "text/plain")
    assert await local_store.get(key) == SECRET_TEXT
    info = await local_store.head(key)
    assert info is not None
    assert (info.size, info.content_type) == (len(SECRET_TEXT), "text/plain")

    await local_store.put(key, b"replaced", "text/plain")  # overwrite, like S3
    assert await local_store.get(key) == b"replaced"

    await local_store.delete(key)
    assert await local_store.head(key) is None
    with pytest.raises(ObjectMissing):
        await local_store.get(key)
    await local_store.delete(key)


async def test_files_on_disk_are_encrypted_private_and_name_no_customer_file(
    local_store: LocalObjectStore,
) -> None:
    key = tenant_key(TENANT, "attachments", "passport-scan.txt")
    await local_store.put(key, SECRET_TEXT, "text/plain")
    files = _files(local_store.root)
    assert len(files) == 2  # the object and its metadata sidecar, no temporary left
    for path in files:
        raw = path.read_bytes()
        assert b"4111" not in raw and b"card" not in raw
        assert "passport" not in str(path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    obj = next(p for p in files if p.suffix == ".obj")
    assert obj.relative_to(local_store.root).parts[:2] == ("tenants", str(TENANT))
    sidecar = json.loads(next(p for p in files if p.suffix == ".json").read_bytes())
    assert sidecar["content_type"] == "text/plain" and sidecar["size"] == len(SECRET_TEXT)
    directory = obj.parent
    while directory != local_store.root.parent:
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
        directory = directory.parent


async def test_ciphertext_is_bound_to_its_key(local_store: LocalObjectStore) -> None:
    mine = tenant_key(TENANT, "a", "mine.txt")
    other_tenant = tenant_key(uuid.uuid4(), "a", "theirs.txt")
    await local_store.put(mine, SECRET_TEXT, "text/plain")
    await local_store.put(other_tenant, b"theirs", "text/plain")
    # Copy my ciphertext over the other object's file: it must not decrypt there.
    src = local_store._paths(mine)[1]
    dst = local_store._paths(other_tenant)[1]
    shutil.copyfile(src, dst)
    with pytest.raises(DecryptionError):
        await local_store.get(other_tenant)


async def test_a_tampered_file_does_not_decrypt(local_store: LocalObjectStore) -> None:
    key = tenant_key(TENANT, "a", "x.txt")
    await local_store.put(key, SECRET_TEXT, "text/plain")
    path = local_store._paths(key)[1]
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(DecryptionError):
        await local_store.get(key)


async def test_objects_survive_key_rotation(tmp_path: Path, encryption_key: bytes) -> None:
    old = LocalObjectStore(
        tmp_path, url_signing_secret(encryption_key), "http://x", keys=[encryption_key]
    )
    key = tenant_key(TENANT, "a", "old.txt")
    await old.put(key, b"written under the old key", "text/plain")

    new_key = secrets.token_bytes(32)
    rotated = LocalObjectStore(
        tmp_path, url_signing_secret(new_key), "http://x", keys=[new_key, encryption_key]
    )
    assert await rotated.get(key) == b"written under the old key"
    without_old = LocalObjectStore(
        tmp_path, url_signing_secret(new_key), "http://x", keys=[new_key]
    )
    with pytest.raises(DecryptionError):
        await without_old.get(key)


async def test_keys_that_could_escape_the_root_are_refused(local_store: LocalObjectStore) -> None:
    for key in ("../escape", "tenants/../../etc/passwd", "/etc/passwd", "a//b", "a/\x00"):
        with pytest.raises(InvalidKey):
            await local_store.put(key, b"x", "text/plain")
    assert not (local_store.root.parent / "escape").exists()


def test_url_signing_secret_is_derived_not_the_key(encryption_key: bytes) -> None:
    secret = url_signing_secret(encryption_key)
    assert len(secret) == 32 and secret != encryption_key
    assert secret == url_signing_secret(encryption_key)
    assert secret != url_signing_secret(secrets.token_bytes(32))


def test_tokens_are_signed_scoped_and_expiring(local_store: LocalObjectStore) -> None:
    claims = UrlClaims(
        op="upload",
        key=tenant_key(TENANT, "a", "x.png"),
        expires_at=int(time.time()) + 60,
        content_type="image/png",
        max_bytes=100,
    )
    token = local_store.issue_token(claims)
    assert local_store.verify_token(token, "upload") == claims

    with pytest.raises(TokenInvalid):
        local_store.verify_token(token, "download")  # an upload URL does not download
    payload, signature = token.split(".")
    forged = UrlClaims(**{**claims.__dict__, "max_bytes": 10**9})
    with pytest.raises(TokenInvalid):
        local_store.verify_token(
            f"{local_store.issue_token(forged).split('.')[0]}.{signature}", "upload"
        )
    for bad in ("", "nodot", f"{payload}.", f".{signature}", f"{payload}.!!!!", token + "A"):
        with pytest.raises(TokenInvalid):
            local_store.verify_token(bad, "upload")
    other = LocalObjectStore(
        local_store.root, url_signing_secret(secrets.token_bytes(32)), "http://x", keys=[b"k" * 32]
    )
    with pytest.raises(TokenInvalid):
        other.verify_token(token, "upload")  # another installation's secret
    with pytest.raises(TokenExpired):
        local_store.verify_token(token, "upload", now=claims.expires_at)
