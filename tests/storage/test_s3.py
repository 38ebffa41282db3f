"""The S3 backend against moto's S3 (its real wire format): encryption on every write,
tenant prefixes, presigned POST and GET."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.storage.base import InvalidKey, ObjectMissing, tenant_key
from app.storage.factory import store_for
from app.storage.s3 import S3ObjectStore
from tests.moto_s3 import CREDENTIALS

TENANT = uuid.uuid4()
KMS_KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


async def test_put_get_head_delete_with_server_side_encryption(
    s3_store: S3ObjectStore, s3: Any, bucket: str
) -> None:
    key = tenant_key(TENANT, "attachments", "hello.txt")
    await s3_store.put(key, b"hello, agent", "text/plain")

    assert await s3_store.get(key) == b"hello, agent"
    info = await s3_store.head(key)
    assert info is not None
    assert (info.size, info.content_type) == (12, "text/plain")
    assert info.etag and '"' not in info.etag
    stored = s3.head_object(Bucket=bucket, Key=f"{s3_store.prefix}/{key}")
    assert stored["ServerSideEncryption"] == "AES256"

    await s3_store.delete(key)
    assert await s3_store.head(key) is None
    with pytest.raises(ObjectMissing):
        await s3_store.get(key)
    await s3_store.delete(key)  # deleting again is not an error


async def test_kms_encryption_names_the_key(s3: Any, bucket: str) -> None:
    store = S3ObjectStore(bucket, prefix="kms", sse="aws:kms", kms_key_id=KMS_KEY, client=s3)
    key = tenant_key(TENANT, "recordings", "call.wav")
    await store.put(key, b"RIFF....WAVE", "audio/wav")
    stored = s3.head_object(Bucket=bucket, Key=f"kms/{key}")
    assert stored["ServerSideEncryption"] == "aws:kms"
    assert stored["SSEKMSKeyId"] == KMS_KEY


async def test_each_tenant_writes_under_its_own_prefix(
    s3_store: S3ObjectStore, s3: Any, bucket: str
) -> None:
    other = uuid.uuid4()
    await s3_store.put(tenant_key(TENANT, "a", "one.txt"), b"1", "text/plain")
    await s3_store.put(tenant_key(other, "a", "two.txt"), b"2", "text/plain")

    def listed(tenant: uuid.UUID) -> list[str]:
        prefix = f"{s3_store.prefix}/tenants/{tenant}/"
        page = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
        return [o["Key"].removeprefix(prefix) for o in page.get("Contents", [])]

    assert listed(TENANT) == ["a/one.txt"]
    assert listed(other) == ["a/two.txt"]


async def test_a_key_that_would_traverse_is_refused_before_any_request(
    s3_store: S3ObjectStore,
) -> None:
    for key in ("../outside", f"tenants/{TENANT}/../x", "/abs", "a\x00b"):
        with pytest.raises(InvalidKey):
            await s3_store.put(key, b"x", "text/plain")
        with pytest.raises(InvalidKey):
            await s3_store.presign_upload(
                key, content_type="text/plain", max_bytes=10, expires_seconds=60
            )


def _policy(fields: dict[str, str]) -> dict[str, Any]:
    policy: dict[str, Any] = json.loads(base64.b64decode(fields["policy"]))
    return policy


async def test_presigned_post_upload_with_httpx(s3_store: S3ObjectStore) -> None:
    key = tenant_key(TENANT, "attachments", "photo.png")
    ticket = await s3_store.presign_upload(
        key, content_type="image/png", max_bytes=1024, expires_seconds=300
    )
    assert ticket.method == "POST"
    assert ticket.fields["key"] == f"{s3_store.prefix}/{key}"
    # The policy S3 checks: size, exact type and encryption are conditions it enforces.
    conditions = _policy(ticket.fields)["conditions"]
    assert ["content-length-range", 1, 1024] in conditions
    assert {"Content-Type": "image/png"} in conditions
    assert {"x-amz-server-side-encryption": "AES256"} in conditions
    assert ticket.fields["x-amz-server-side-encryption"] == "AES256"

    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100
    async with httpx.AsyncClient() as http:
        r = await http.post(
            ticket.url, data=ticket.fields, files={"file": ("photo.png", png, "image/png")}
        )
    assert r.status_code == 204, r.text
    assert await s3_store.get(key) == png
    info = await s3_store.head(key)
    assert info is not None and info.content_type == "image/png"


async def test_presigned_post_under_kms_carries_the_key_id(s3: Any, bucket: str) -> None:
    store = S3ObjectStore(bucket, sse="aws:kms", kms_key_id=KMS_KEY, client=s3)
    ticket = await store.presign_upload(
        tenant_key(TENANT, "x.pdf"),
        content_type="application/pdf",
        max_bytes=10,
        expires_seconds=60,
    )
    conditions = _policy(ticket.fields)["conditions"]
    assert {"x-amz-server-side-encryption": "aws:kms"} in conditions
    assert {"x-amz-server-side-encryption-aws-kms-key-id": KMS_KEY} in conditions


async def test_presigned_download_is_an_attachment(s3_store: S3ObjectStore) -> None:
    key = tenant_key(TENANT, "attachments", "report.csv")
    await s3_store.put(key, b"a,b\n1,2\n", "text/csv")
    url = await s3_store.presign_download(key, expires_seconds=60, filename="Q3 résumé.csv")
    async with httpx.AsyncClient() as http:
        r = await http.get(url)
    assert r.status_code == 200
    assert r.content == b"a,b\n1,2\n"
    assert r.headers["content-disposition"] == (
        "attachment; filename=\"Q3_resume.csv\"; filename*=UTF-8''Q3%20r%C3%A9sum%C3%A9.csv"
    )


async def test_the_factory_builds_the_s3_store_from_settings(
    moto_endpoint: str, bucket: str, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", CREDENTIALS["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", CREDENTIALS["aws_secret_access_key"])
    store = store_for(
        Settings(
            storage_backend="s3",
            s3_bucket=bucket,
            s3_prefix="/factory/",
            s3_endpoint_url=moto_endpoint,
        )
    )
    assert isinstance(store, S3ObjectStore)
    key = tenant_key(TENANT, "f.txt")
    await store.put(key, b"via settings", "text/plain")
    stored = s3.get_object(Bucket=bucket, Key=f"factory/{key}")
    assert stored["Body"].read() == b"via settings"
    assert stored["ServerSideEncryption"] == "AES256"
