"""Object storage: one interface over S3 and the embedded local directory.

Keys are tenant-scoped: ``tenants/<tenant id>/<part>/.../<filename>``
(:func:`tenant_key`), so a bucket policy, a lifecycle rule or a tenant purge works on a
prefix, and :func:`key_belongs_to` tells whether a key a client hands back is its own.
Clients upload straight to the store with a presigned ticket and download with a
presigned URL; the API never proxies attachment bytes (docs/decisions/0014).
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol
from urllib.parse import quote

TENANTS = "tenants"
MAX_PART_BYTES = 255
MAX_KEY_BYTES = 1024  # S3's limit
# Filenames keep this subset; anything else becomes "_" (the extension survives).
_UNSAFE_FILENAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_SAFE_EXTENSION = re.compile(r"^[A-Za-z0-9]{1,16}$")
MAX_FILENAME_STEM = 100


class ObjectMissing(LookupError):
    """No object under the key."""


class InvalidKey(ValueError):
    """A key or key part that could escape its prefix or is not storable."""


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    content_type: str
    etag: str


@dataclass(frozen=True)
class ListedObject:
    """One object of a listing: its key (without any store-wide prefix), size and when
    it was last written (timezone-aware UTC)."""

    key: str
    size: int
    last_modified: datetime


@dataclass(frozen=True)
class UploadTicket:
    """How a client uploads one object straight to the store.

    ``POST``: a multipart form of ``fields`` (in order) followed by the ``file`` part (S3
    presigned POST). ``PUT``: the raw bytes as the body with ``headers``. Either way the
    store itself refuses a body over ``max_bytes`` or of another ``content_type``."""

    url: str
    method: Literal["POST", "PUT"]
    expires_at: datetime
    max_bytes: int
    content_type: str
    fields: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


class ObjectStore(Protocol):
    name: str

    async def put(self, key: str, data: bytes, content_type: str) -> None: ...

    async def get(self, key: str) -> bytes:
        """The object's bytes; raises :class:`ObjectMissing`."""
        ...

    async def head(self, key: str) -> ObjectInfo | None: ...

    async def delete(self, key: str) -> None:
        """Remove the object; deleting a missing key is not an error."""
        ...

    async def presign_upload(
        self, key: str, *, content_type: str, max_bytes: int, expires_seconds: int
    ) -> UploadTicket: ...

    async def presign_download(self, key: str, *, expires_seconds: int, filename: str) -> str: ...

    def list_objects(
        self, prefix: str, *, page_size: int = 1000
    ) -> AsyncIterator[list[ListedObject]]:
        """The objects whose key starts with ``prefix``, a page (at most ``page_size``)
        at a time, in no promised order. An object written or deleted during the listing
        may or may not appear."""
        ...


def _is_control(ch: str) -> bool:
    # Cc (C0, DEL, C1) and Cf (bidi overrides, zero-width joiners) have no place in a key.
    return unicodedata.category(ch) in ("Cc", "Cf", "Cs")


def check_part(part: str) -> str:
    """One path segment of a key: refused (never repaired) if it could traverse or is
    not storable."""
    _check_structure(part)
    if len(part.encode("utf-8", "surrogatepass")) > MAX_PART_BYTES:
        raise InvalidKey(f"a key part is longer than {MAX_PART_BYTES} bytes")
    return part


def _check_structure(part: str) -> None:
    if not isinstance(part, str) or part == "":
        raise InvalidKey("a key part is empty")
    if part in (".", ".."):
        raise InvalidKey("a key part may not be '.' or '..'")
    if "/" in part or "\\" in part:
        raise InvalidKey("a key part may not contain '/' or '\\'")
    if any(_is_control(ch) for ch in part):
        raise InvalidKey("a key part may not contain control characters")


def check_key(key: str) -> str:
    """A whole key: relative, segments that pass :func:`check_part`, within S3's size."""
    if not isinstance(key, str) or not key:
        raise InvalidKey("the key is empty")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise InvalidKey(f"the key is longer than {MAX_KEY_BYTES} bytes")
    for part in key.split("/"):
        check_part(part)
    return key


def safe_filename(name: str, *, default: str = "file") -> str:
    """A filename reduced to ``[A-Za-z0-9._-]`` (accents folded, anything else "_"),
    keeping its extension: ``"Résumé (final).PDF"`` -> ``"Resume_final.PDF"``. Only the
    last path component of ``name`` counts."""
    name = re.split(r"[/\\]", name)[-1]
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    stem, dot, ext = folded.rpartition(".")
    if not dot or not _SAFE_EXTENSION.match(ext):
        stem, ext = folded, ""
    stem = _UNSAFE_FILENAME_CHARS.sub("_", stem).strip("._-")[:MAX_FILENAME_STEM].rstrip("._-")
    stem = stem or default
    return f"{stem}.{ext}" if ext else stem


def tenant_key(tenant_id: uuid.UUID | str, *parts: str) -> str:
    """``tenants/<tenant_id>/<parts...>``. Every part is checked (no traversal, no
    separators, no control characters: :class:`InvalidKey`); the last one is a filename
    and is reduced to a safe subset, extension kept (:func:`safe_filename`)."""
    try:
        tenant = str(uuid.UUID(str(tenant_id)))
    except ValueError:
        raise InvalidKey("the tenant id is not a UUID") from None
    if not parts:
        raise InvalidKey("a tenant key needs at least one part")
    *directories, filename = parts
    checked = [check_part(p) for p in directories]
    _check_structure(filename)  # refused, not repaired: "../x" is an attack, not a name
    return check_key("/".join([TENANTS, tenant, *checked, safe_filename(filename)]))


def key_belongs_to(key: str, tenant_id: uuid.UUID | str) -> bool:
    """True when ``key`` is a well-formed key under ``tenant_id``'s prefix."""
    try:
        tenant = str(uuid.UUID(str(tenant_id)))
        parts = check_key(key).split("/")
    except (InvalidKey, ValueError):
        return False
    return len(parts) >= 3 and parts[0] == TENANTS and parts[1] == tenant


def tenant_prefix(tenant_id: uuid.UUID | str, *parts: str) -> str:
    """``tenants/<tenant_id>/<parts...>/``: the prefix of the keys :func:`tenant_key`
    builds with those leading parts (every part checked, none reduced)."""
    try:
        tenant = str(uuid.UUID(str(tenant_id)))
    except ValueError:
        raise InvalidKey("the tenant id is not a UUID") from None
    return "/".join([TENANTS, tenant, *(check_part(p) for p in parts)]) + "/"


def tenant_of(key: str) -> uuid.UUID | None:
    """The tenant a key is under, or None for a key outside ``tenants/``."""
    parts = key.split("/")
    if len(parts) < 3 or parts[0] != TENANTS:
        return None
    try:
        return uuid.UUID(parts[1])
    except ValueError:
        return None


def content_disposition(filename: str) -> str:
    """``attachment`` with an ASCII ``filename`` (safe subset) and the original name in
    ``filename*`` (RFC 6266 / RFC 8187), control characters dropped: the name cannot
    break out of the header."""
    clean = "".join(ch for ch in filename if not _is_control(ch)).strip() or "file"
    clean = re.split(r"[/\\]", clean)[-1] or "file"
    ascii_name = safe_filename(clean)
    encoded = quote(clean.encode("utf-8", "replace"), safe="")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{encoded}"
