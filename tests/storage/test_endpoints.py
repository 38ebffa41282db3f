"""Presigned URLs of the local backend, served by the API: upload (PUT, or the form an
S3 presigned POST sends), download, and every way a URL is refused. moto does not check
presigned signatures or policies, so S3's own enforcement is mirrored and tested here."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from app.storage.base import tenant_key
from app.storage.local import LocalObjectStore, UrlClaims
from app.storage.s3 import S3ObjectStore

PROBLEM = "application/problem+json"
TENANT = uuid.uuid4()
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


@pytest.fixture
def store(app: Any) -> LocalObjectStore:
    store = app.state.object_store
    assert isinstance(store, LocalObjectStore)  # the default backend
    return store


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path


async def presign(
    store: LocalObjectStore,
    name: str = "photo.png",
    *,
    content_type: str = "image/png",
    max_bytes: int = 4096,
) -> tuple[str, str]:
    key = tenant_key(TENANT, "attachments", uuid.uuid4().hex, name)
    ticket = await store.presign_upload(
        key, content_type=content_type, max_bytes=max_bytes, expires_seconds=60
    )
    assert ticket.method == "PUT" and ticket.headers == {"Content-Type": content_type}
    assert ticket.url.startswith("http://127.0.0.1:8000/v1/storage/objects/")
    return key, path_of(ticket.url)


def problem_code(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    code: str = r.json()["code"]
    return code


async def test_presigned_put_then_download(
    client: httpx.AsyncClient, store: LocalObjectStore
) -> None:
    key, url = await presign(store)
    r = await client.put(url, content=PNG, headers={"Content-Type": "image/png"})
    assert r.status_code == 204, r.text
    assert r.headers["etag"]
    assert await store.get(key) == PNG

    download = await store.presign_download(key, expires_seconds=60, filename="Holiday photo.png")
    r = await client.get(path_of(download))
    assert r.status_code == 200
    assert r.content == PNG
    assert r.headers["content-type"] == "image/png"
    assert r.headers["content-disposition"] == (
        "attachment; filename=\"Holiday_photo.png\"; filename*=UTF-8''Holiday%20photo.png"
    )
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["content-length"] == str(len(PNG))


async def test_uploads_past_the_api_body_limit_are_bounded_by_the_url_instead(
    client: httpx.AsyncClient, store: LocalObjectStore, app: Any
) -> None:
    size = app.state.settings.max_body_bytes + 200_000  # over the JSON API's limit
    key, url = await presign(store, "big.pdf", content_type="application/pdf", max_bytes=size)
    data = b"%PDF" + b"x" * (size - 4)
    r = await client.put(url, content=data, headers={"Content-Type": "application/pdf"})
    assert r.status_code == 204, r.text
    info = await store.head(key)
    assert info is not None and info.size == size


async def test_a_tampered_token_is_403(client: httpx.AsyncClient, store: LocalObjectStore) -> None:
    key, url = await presign(store)
    prefix, token = url.rsplit("/", 1)
    payload, signature = token.split(".")
    # Point the signed payload at another tenant's key: the signature no longer matches.
    forged = store.issue_token(
        UrlClaims(
            op="upload",
            key=tenant_key(uuid.uuid4(), "x.png"),
            expires_at=int(time.time()) + 60,
            content_type="image/png",
            max_bytes=4096,
        )
    ).split(".")[0]
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    for bad in (f"{forged}.{signature}", f"{payload}.{flipped}", "garbage", "a.b"):
        r = await client.put(f"{prefix}/{bad}", content=PNG, headers={"Content-Type": "image/png"})
        assert problem_code(r, 403) == "signature-invalid"
    assert await store.head(key) is None


async def test_an_expired_url_is_403(client: httpx.AsyncClient, store: LocalObjectStore) -> None:
    key = tenant_key(TENANT, "attachments", "late.png")
    token = store.issue_token(
        UrlClaims(
            op="upload",
            key=key,
            expires_at=int(time.time()) - 1,
            content_type="image/png",
            max_bytes=4096,
        )
    )
    r = await client.put(
        f"/v1/storage/objects/{token}", content=PNG, headers={"Content-Type": "image/png"}
    )
    assert problem_code(r, 403) == "url-expired"
    await store.put(key, PNG, "image/png")
    expired_download = store.issue_token(
        UrlClaims(op="download", key=key, expires_at=int(time.time()) - 1, filename="late.png")
    )
    r = await client.get(f"/v1/storage/objects/{expired_download}")
    assert problem_code(r, 403) == "url-expired"


async def test_an_upload_url_does_not_download_and_vice_versa(
    client: httpx.AsyncClient, store: LocalObjectStore
) -> None:
    key, url = await presign(store)
    assert problem_code(await client.get(url), 403) == "signature-invalid"
    await store.put(key, PNG, "image/png")
    download = path_of(await store.presign_download(key, expires_seconds=60, filename="a.png"))
    r = await client.put(download, content=PNG, headers={"Content-Type": "image/png"})
    assert problem_code(r, 403) == "signature-invalid"


async def test_a_body_over_the_limit_is_413_and_nothing_is_stored(
    client: httpx.AsyncClient, store: LocalObjectStore
) -> None:
    key, url = await presign(store, max_bytes=1000)
    r = await client.put(url, content=b"x" * 1001, headers={"Content-Type": "image/png"})
    assert problem_code(r, 413) == "too-large"
    assert r.json()["max_bytes"] == 1000

    async def streamed() -> AsyncIterator[bytes]:  # no Content-Length: counted as read
        for _ in range(5):
            yield b"x" * 300

    r = await client.put(url, content=streamed(), headers={"Content-Type": "image/png"})
    assert "content-length" not in r.request.headers
    assert problem_code(r, 413) == "too-large"
    assert await store.head(key) is None

    r = await client.put(url, content=b"x" * 1000, headers={"Content-Type": "image/png"})
    assert r.status_code == 204  # exactly the limit is fine


async def test_another_content_type_is_415(
    client: httpx.AsyncClient, store: LocalObjectStore
) -> None:
    key, url = await presign(store)
    for content_type in ("text/html", "image/svg+xml", "image/png; charset=utf-8"):
        r = await client.put(url, content=PNG, headers={"Content-Type": content_type})
        assert problem_code(r, 415) == "unsupported-type"
        assert r.json()["field"] == "header.Content-Type"
    r = await client.put(url, content=PNG)  # none at all
    assert problem_code(r, 415) == "unsupported-type"
    assert await store.head(key) is None


async def test_an_empty_upload_is_422(client: httpx.AsyncClient, store: LocalObjectStore) -> None:
    key, url = await presign(store)
    r = await client.put(url, content=b"", headers={"Content-Type": "image/png"})
    assert problem_code(r, 422) == "validation-failed"
    assert await store.head(key) is None


def s3_style_fields(key: str, content_type: str) -> dict[str, str]:
    """What a client built for S3 presigned POST sends besides the file."""
    return {
        "key": key,
        "Content-Type": content_type,
        "x-amz-server-side-encryption": "AES256",
        "x-amz-algorithm": "AWS4-HMAC-SHA256",
        "x-amz-credential": "AKIA/20260101/us-east-1/s3/aws4_request",
        "x-amz-date": "20260101T000000Z",
        "policy": "eyJleHBpcmF0aW9uIjogIjIwMjYifQ==",
        "x-amz-signature": "00" * 32,
    }


async def test_the_s3_presigned_post_form_works_too(
    client: httpx.AsyncClient, store: LocalObjectStore
) -> None:
    key, url = await presign(store)
    r = await client.post(
        url,
        data=s3_style_fields("ignored/by/us", "image/png"),
        files={"file": ("photo.png", PNG, "image/png")},
    )
    assert r.status_code == 204, r.text
    assert await store.get(key) == PNG  # the token's key, not the form's
    info = await store.head(key)
    assert info is not None and info.content_type == "image/png"


async def test_the_post_form_is_checked_like_a_put(
    client: httpx.AsyncClient, store: LocalObjectStore
) -> None:
    key, url = await presign(store, max_bytes=500)
    r = await client.post(
        url,
        data=s3_style_fields(key, "text/html"),
        files={"file": ("x.html", b"<script>", "text/html")},
    )
    assert problem_code(r, 415) == "unsupported-type"
    r = await client.post(
        url,
        data=s3_style_fields(key, "image/png"),
        files={"file": ("photo.png", PNG, "image/png")},
    )
    assert problem_code(r, 413) == "too-large"
    r = await client.post(url, data=s3_style_fields(key, "image/png"))  # urlencoded, no file
    assert problem_code(r, 415) == "unsupported-media-type"
    r = await client.post(url, data=s3_style_fields(key, "image/png"), files={"other": ("a", b"b")})
    assert problem_code(r, 422) == "validation-failed"
    assert r.json()["field"] == "body.file"
    truncated = (
        b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
        b"Content-Type: image/png\r\n\r\n" + PNG[:100]
    )
    r = await client.post(
        url, content=truncated, headers={"Content-Type": "multipart/form-data; boundary=XyZ"}
    )
    assert problem_code(r, 400) == "bad-request"
    assert await store.head(key) is None


async def test_downloading_a_missing_object_is_404(
    client: httpx.AsyncClient, store: LocalObjectStore
) -> None:
    url = await store.presign_download(
        tenant_key(TENANT, "gone.png"), expires_seconds=60, filename="gone.png"
    )
    assert problem_code(await client.get(path_of(url)), 404) == "not-found"


@pytest.fixture
def s3_backend(app: Any, s3: Any, bucket: str) -> Iterator[None]:
    saved = app.state.object_store
    app.state.object_store = S3ObjectStore(bucket, client=s3)
    try:
        yield
    finally:
        app.state.object_store = saved


async def test_the_routes_are_404_when_the_backend_is_s3(
    client: httpx.AsyncClient, store: LocalObjectStore, s3_backend: None
) -> None:
    _key, url = await presign(store)
    r = await client.put(url, content=PNG, headers={"Content-Type": "image/png"})
    assert problem_code(r, 404) == "not-found"
    assert problem_code(await client.get(url), 404) == "not-found"
