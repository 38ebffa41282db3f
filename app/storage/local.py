"""The embedded default: objects as files under a directory, encrypted at rest.

It mirrors what the S3 backend gives: encryption at rest (AES-256-GCM under the keys of
``app.core.crypto``, the object key bound in as associated data, so a file copied under
another key does not decrypt) and presigned URLs (HMAC-SHA256-signed, expiring tokens
that ``app/storage/endpoints.py`` honours at ``/v1/storage/objects/<token>``).

Layout: ``<root>/tenants/<tenant id>/<h[:2]>/<h>.obj`` and ``<h>.json`` (content type,
size, ETag, and the key itself encrypted, for listings) where ``h`` is the SHA-256 of
the key; keys outside ``tenants/`` go under
``<root>/global/``. Hashed names cannot collide with one another or escape the root,
keep customers' filenames off the disk, and a tenant's objects stay one directory
(purged with it). Directories are 0700, files 0600, every write is a temporary file
renamed into place. One machine only: several API replicas need the S3 backend.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.core.crypto import KEY_BYTES, NONCE_BYTES, DecryptionError, key_id
from app.core.errors import Forbidden
from app.storage.base import (
    ListedObject,
    ObjectInfo,
    ObjectMissing,
    UploadTicket,
    check_key,
    tenant_of,
)

log = logging.getLogger("switchboard.storage")

OBJECTS_PATH = "/v1/storage/objects"
MAGIC = b"SBOBJ1"
NAME_MAGIC = b"SBKEY1"  # the sidecar's encrypted key (associated data: the file's hash)
KID_BYTES = 12  # app.core.crypto.key_id is 12 hex characters
_TOKEN_CONTEXT = b"switchboard-storage-url:v1:"
_URL_SECRET_INFO = b"switchboard storage url signing v1"
_DIR_MODE = 0o700
MAX_TOKEN_CHARS = 8192

Op = Literal["upload", "download"]


class TokenInvalid(Forbidden):
    code, title = "signature-invalid", "Forbidden"


class TokenExpired(Forbidden):
    code, title = "url-expired", "Forbidden"


def url_signing_secret(key: bytes) -> bytes:
    """The presigned-URL HMAC secret, derived (HKDF-SHA256) from an encryption key: no
    second secret to configure, and never the encryption key itself."""
    if len(key) != KEY_BYTES:
        raise ValueError(f"an encryption key must be {KEY_BYTES} bytes")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_URL_SECRET_INFO)
    return hkdf.derive(key)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class UrlClaims:
    """What a presigned URL allows: one operation on one key until ``expires_at``."""

    op: Op
    key: str
    expires_at: int  # unix seconds
    content_type: str | None = None  # upload: the only type accepted
    max_bytes: int | None = None  # upload: the largest body accepted
    filename: str | None = None  # download: the name the browser saves it as

    def to_json(self) -> bytes:
        body: dict[str, Any] = {"op": self.op, "key": self.key, "exp": self.expires_at}
        if self.content_type is not None:
            body["ct"] = self.content_type
        if self.max_bytes is not None:
            body["max"] = self.max_bytes
        if self.filename is not None:
            body["fn"] = self.filename
        return json.dumps(body, separators=(",", ":")).encode("ascii")

    @classmethod
    def from_json(cls, raw: bytes) -> UrlClaims:
        body = json.loads(raw)
        op = body["op"]
        if op not in ("upload", "download"):
            raise ValueError("unknown operation")
        return cls(
            op=op,
            key=str(body["key"]),
            expires_at=int(body["exp"]),
            content_type=body.get("ct"),
            max_bytes=body.get("max"),
            filename=body.get("fn"),
        )


class LocalObjectStore:
    name = "local"

    def __init__(
        self, root: Path, secret: bytes, public_url: str, *, keys: Sequence[bytes]
    ) -> None:
        if len(secret) < 32:
            raise ValueError("the URL signing secret must be at least 32 bytes")
        if not keys:
            raise ValueError("no encryption key")
        self.root = Path(root)
        self.public_url = public_url.rstrip("/")
        self._secret = secret
        self._aeads: dict[bytes, AESGCM] = {}
        for key in keys:
            if len(key) != KEY_BYTES:
                raise ValueError(f"an encryption key must be {KEY_BYTES} bytes")
            self._aeads[key_id(key).encode("ascii")] = AESGCM(key)
        self._active = key_id(keys[0]).encode("ascii")

    # -- encryption at rest --------------------------------------------------------------

    @staticmethod
    def _aad(kid: bytes, key: str) -> bytes:
        return MAGIC + b":" + kid + b":" + key.encode("utf-8")

    def _seal(self, key: str, data: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aeads[self._active].encrypt(nonce, data, self._aad(self._active, key))
        return MAGIC + self._active + nonce + sealed

    def _open(self, key: str, blob: bytes) -> bytes:
        head = len(MAGIC) + KID_BYTES
        if len(blob) < head + NONCE_BYTES + 16 or not blob.startswith(MAGIC):
            raise DecryptionError("not a Switchboard object")
        kid = blob[len(MAGIC) : head]
        aead = self._aeads.get(kid)
        if aead is None:
            raise DecryptionError(f"object encrypted under key {kid.decode('ascii', 'replace')}")
        nonce, sealed = blob[head : head + NONCE_BYTES], blob[head + NONCE_BYTES :]
        try:
            return aead.decrypt(nonce, sealed, self._aad(kid, key))
        except InvalidTag:
            raise DecryptionError("object altered, or stored under another key") from None

    def _name_aad(self, kid: bytes, digest: str) -> bytes:
        return NAME_MAGIC + b":" + kid + b":" + digest.encode("ascii")

    def _seal_name(self, key: str, digest: str) -> str:
        """The key, encrypted for the sidecar: a listing can name the object, the disk
        still shows no customer's filename."""
        nonce = os.urandom(NONCE_BYTES)
        aad = self._name_aad(self._active, digest)
        sealed = self._aeads[self._active].encrypt(nonce, key.encode("utf-8"), aad)
        return _b64url(self._active + nonce + sealed)

    def _open_name(self, sealed: str, digest: str) -> str | None:
        """The key a sidecar names, or None when it cannot be read under our keys or
        does not hash to the file's name."""
        try:
            blob = _unb64url(sealed)
        except (binascii.Error, ValueError):
            return None
        kid, rest = blob[:KID_BYTES], blob[KID_BYTES:]
        aead = self._aeads.get(kid)
        if aead is None or len(rest) < NONCE_BYTES + 16:
            return None
        try:
            key = aead.decrypt(rest[:NONCE_BYTES], rest[NONCE_BYTES:], self._name_aad(kid, digest))
            name = key.decode("utf-8")
        except (InvalidTag, UnicodeDecodeError):
            return None
        return name if hashlib.sha256(key).hexdigest() == digest else None

    # -- files ---------------------------------------------------------------------------

    def _paths(self, key: str) -> tuple[Path, Path, Path]:
        check_key(key)
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
        tenant = tenant_of(key)
        base = self.root / "tenants" / str(tenant) if tenant else self.root / "global"
        directory = base / digest[:2]
        return directory, directory / f"{digest}.obj", directory / f"{digest}.json"

    def _ensure_dir(self, directory: Path) -> None:
        """Create ``directory`` and every missing parent below the root, each 0700
        (``mkdir(parents=True)`` would give the parents the default mode)."""
        self.root.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
        current = self.root
        for part in directory.relative_to(self.root).parts:
            current = current / part
            with contextlib.suppress(FileExistsError):
                current.mkdir(mode=_DIR_MODE)

    @staticmethod
    def _atomic_write(path: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")  # mode 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def _put_sync(self, key: str, data: bytes, content_type: str) -> None:
        directory, obj, meta = self._paths(key)
        self._ensure_dir(directory)
        etag = hashlib.md5(data, usedforsecurity=False).hexdigest()  # as S3's for one part
        info = {
            "content_type": content_type,
            "size": len(data),
            "etag": etag,
            "name": self._seal_name(key, obj.stem),
        }
        # The object first, then its metadata: head() sees it only once both are there.
        self._atomic_write(obj, self._seal(key, data))
        self._atomic_write(meta, json.dumps(info).encode())

    def _get_sync(self, key: str) -> bytes:
        _, obj, _ = self._paths(key)
        try:
            blob = obj.read_bytes()
        except FileNotFoundError:
            raise ObjectMissing(key) from None
        return self._open(key, blob)

    def _head_sync(self, key: str) -> ObjectInfo | None:
        _, obj, meta = self._paths(key)
        try:
            info = json.loads(meta.read_bytes())
        except FileNotFoundError:
            return None
        if not obj.exists():
            return None
        return ObjectInfo(
            size=int(info["size"]), content_type=str(info["content_type"]), etag=str(info["etag"])
        )

    def _delete_sync(self, key: str) -> None:
        _, obj, meta = self._paths(key)
        meta.unlink(missing_ok=True)  # metadata first: head() answers None at once
        obj.unlink(missing_ok=True)

    def _bucket_dirs(self, prefix: str) -> list[Path]:
        """The ``<h[:2]>`` directories that can hold keys under ``prefix``: one
        tenant's when the prefix names a tenant, else all of them."""
        tenant = tenant_of(prefix)
        if tenant is not None:
            bases = [self.root / "tenants" / str(tenant)]
        else:
            tenants = self.root / "tenants"
            bases = sorted(p for p in tenants.iterdir() if p.is_dir()) if tenants.is_dir() else []
            bases.append(self.root / "global")
        return [d for base in bases if base.is_dir() for d in sorted(base.iterdir()) if d.is_dir()]

    def _list_dir_sync(self, directory: Path, prefix: str) -> tuple[list[ListedObject], int]:
        """The objects of one directory under ``prefix``, and how many could not be
        named (sidecars from before keys were recorded, or under a retired key)."""
        listed: list[ListedObject] = []
        unnamed = 0
        for meta in sorted(directory.glob("*.json")):
            try:
                info = json.loads(meta.read_bytes())
                mtime = meta.with_suffix(".obj").stat().st_mtime
            except (FileNotFoundError, ValueError):
                continue  # deleted meanwhile, or half of a write that never finished
            sealed = info.get("name") if isinstance(info, dict) else None
            key = self._open_name(sealed, meta.stem) if isinstance(sealed, str) else None
            if key is None:
                unnamed += 1
            elif key.startswith(prefix):
                listed.append(
                    ListedObject(
                        key=key,
                        size=int(info.get("size", 0)),
                        last_modified=datetime.fromtimestamp(mtime, UTC),
                    )
                )
        return listed, unnamed

    async def list_objects(
        self, prefix: str, *, page_size: int = 1000
    ) -> AsyncIterator[list[ListedObject]]:
        """Read from the sidecars, one directory per worker-thread call; the last write
        of the object file is its last-modified time."""
        check_key(prefix.rstrip("/"))
        page_size = max(1, page_size)
        page: list[ListedObject] = []
        unnamed = 0
        for directory in await asyncio.to_thread(self._bucket_dirs, prefix):
            listed, skipped = await asyncio.to_thread(self._list_dir_sync, directory, prefix)
            unnamed += skipped
            page.extend(listed)
            while len(page) >= page_size:
                yield page[:page_size]
                page = page[page_size:]
        if page:
            yield page
        if unnamed:
            log.warning("%d stored objects have no readable key and were not listed", unnamed)

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(self._put_sync, key, data, content_type)

    async def get(self, key: str) -> bytes:
        return await asyncio.to_thread(self._get_sync, key)

    async def head(self, key: str) -> ObjectInfo | None:
        return await asyncio.to_thread(self._head_sync, key)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._delete_sync, key)

    # -- presigned URLs ------------------------------------------------------------------

    def _signature(self, payload: str) -> bytes:
        return hmac.new(self._secret, _TOKEN_CONTEXT + payload.encode("ascii"), "sha256").digest()

    def issue_token(self, claims: UrlClaims) -> str:
        payload = _b64url(claims.to_json())
        return f"{payload}.{_b64url(self._signature(payload))}"

    def verify_token(self, token: str, op: Op, *, now: float | None = None) -> UrlClaims:
        """The claims of a token this store signed, for ``op``, not yet expired; else
        :class:`TokenInvalid` or :class:`TokenExpired`."""
        payload, dot, signature = token.partition(".")
        if not dot or not payload or len(token) > MAX_TOKEN_CHARS:
            raise TokenInvalid("The URL's signature is invalid.")
        try:
            given = _unb64url(signature)
            raw = _unb64url(payload)
        except (binascii.Error, ValueError):
            raise TokenInvalid("The URL's signature is invalid.") from None
        if not hmac.compare_digest(given, self._signature(payload)):
            raise TokenInvalid("The URL's signature is invalid.")
        try:
            claims = UrlClaims.from_json(raw)
        except (ValueError, KeyError, TypeError):
            raise TokenInvalid("The URL's signature is invalid.") from None
        if claims.op != op:
            raise TokenInvalid(
                f"This URL is not for {'uploads' if op == 'upload' else 'downloads'}."
            )
        if claims.expires_at <= (time.time() if now is None else now):
            raise TokenExpired("The URL has expired; ask for a new one.")
        return claims

    def _url(self, claims: UrlClaims) -> str:
        return f"{self.public_url}{OBJECTS_PATH}/{self.issue_token(claims)}"

    async def presign_upload(
        self, key: str, *, content_type: str, max_bytes: int, expires_seconds: int
    ) -> UploadTicket:
        check_key(key)
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        expires_at = int(time.time()) + expires_seconds
        claims = UrlClaims(
            op="upload",
            key=key,
            expires_at=expires_at,
            content_type=content_type,
            max_bytes=max_bytes,
        )
        return UploadTicket(
            url=self._url(claims),
            method="PUT",
            fields={},
            headers={"Content-Type": content_type},
            expires_at=datetime.fromtimestamp(expires_at, UTC),
            max_bytes=max_bytes,
            content_type=content_type,
        )

    async def presign_download(self, key: str, *, expires_seconds: int, filename: str) -> str:
        check_key(key)
        claims = UrlClaims(
            op="download",
            key=key,
            expires_at=int(time.time()) + expires_seconds,
            filename=filename,
        )
        return self._url(claims)
