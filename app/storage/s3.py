"""Amazon S3 (or anything speaking its API) through boto3.

boto3 is synchronous: every call runs in a worker thread. Every object is written with
server-side encryption (SSE-S3 or SSE-KMS), and presigned uploads carry that and the
size and type conditions in their signed policy, so S3 itself refuses an upload that is
too large, of another type or unencrypted.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from app.storage.base import (
    ListedObject,
    ObjectInfo,
    ObjectMissing,
    UploadTicket,
    check_key,
    content_disposition,
)

SseMode = Literal["AES256", "aws:kms"]
_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


def _error_code(exc: Exception) -> str:
    response: dict[str, Any] = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class S3ObjectStore:
    name = "s3"

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        region: str = "us-east-1",
        endpoint_url: str | None = None,
        sse: SseMode = "AES256",
        kms_key_id: str | None = None,
        client: Any = None,
    ) -> None:
        if sse not in ("AES256", "aws:kms"):
            raise ValueError(f"unsupported server-side encryption {sse!r}")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if self.prefix:
            check_key(self.prefix)
        self.sse: SseMode = sse
        self.kms_key_id = kms_key_id
        if client is None:
            import boto3
            from botocore.config import Config

            client = boto3.client(
                "s3",
                region_name=region,
                endpoint_url=endpoint_url,
                config=Config(signature_version="s3v4", retries={"mode": "standard"}),
            )
        self.client = client

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _sse_params(self) -> dict[str, str]:
        params: dict[str, str] = {"ServerSideEncryption": self.sse}
        if self.sse == "aws:kms" and self.kms_key_id:
            params["SSEKMSKeyId"] = self.kms_key_id
        return params

    def _sse_fields(self) -> dict[str, str]:
        """The same as form fields of a presigned POST."""
        fields: dict[str, str] = {"x-amz-server-side-encryption": self.sse}
        if self.sse == "aws:kms" and self.kms_key_id:
            fields["x-amz-server-side-encryption-aws-kms-key-id"] = self.kms_key_id
        return fields

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(
            self.client.put_object,
            Bucket=self.bucket,
            Key=self._key(key),
            Body=data,
            ContentType=content_type,
            **self._sse_params(),
        )

    async def get(self, key: str) -> bytes:
        full = self._key(key)

        def read() -> bytes:
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=full)
            except Exception as exc:
                if _error_code(exc) in _MISSING_CODES:
                    raise ObjectMissing(key) from None
                raise
            body = response["Body"]
            try:
                data: bytes = body.read()
            finally:
                body.close()
            return data

        return await asyncio.to_thread(read)

    async def head(self, key: str) -> ObjectInfo | None:
        full = self._key(key)

        def head() -> ObjectInfo | None:
            try:
                r = self.client.head_object(Bucket=self.bucket, Key=full)
            except Exception as exc:
                if _error_code(exc) in _MISSING_CODES:
                    return None
                raise
            return ObjectInfo(
                size=int(r["ContentLength"]),
                content_type=str(r.get("ContentType") or "application/octet-stream"),
                etag=str(r.get("ETag", "")).strip('"'),
            )

        return await asyncio.to_thread(head)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.client.delete_object, Bucket=self.bucket, Key=self._key(key))

    async def list_objects(
        self, prefix: str, *, page_size: int = 1000
    ) -> AsyncIterator[list[ListedObject]]:
        """``ListObjectsV2`` pages (lexicographic order), each fetched in a worker
        thread; keys come back without the store's own prefix."""
        check_key(prefix.rstrip("/"))
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        strip = f"{self.prefix}/" if self.prefix else ""
        paginator = self.client.get_paginator("list_objects_v2")
        pages = iter(
            paginator.paginate(
                Bucket=self.bucket,
                Prefix=full,
                PaginationConfig={"PageSize": max(1, min(page_size, 1000))},
            )
        )
        while True:
            page = await asyncio.to_thread(next, pages, None)
            if page is None:
                return
            listed = [
                ListedObject(
                    key=str(item["Key"]).removeprefix(strip),
                    size=int(item.get("Size", 0)),
                    last_modified=_utc(item["LastModified"]),
                )
                for item in page.get("Contents", [])
            ]
            if listed:
                yield listed

    async def presign_upload(
        self, key: str, *, content_type: str, max_bytes: int, expires_seconds: int
    ) -> UploadTicket:
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        full = self._key(key)
        fields: dict[str, str] = {"Content-Type": content_type, **self._sse_fields()}
        conditions: list[Any] = [
            ["content-length-range", 1, max_bytes],
            {"Content-Type": content_type},
            *({name: value} for name, value in self._sse_fields().items()),
        ]
        expires_at = datetime.now(UTC) + timedelta(seconds=expires_seconds)
        post = await asyncio.to_thread(
            self.client.generate_presigned_post,
            Bucket=self.bucket,
            Key=full,
            Fields=fields,
            Conditions=conditions,
            ExpiresIn=expires_seconds,
        )
        return UploadTicket(
            url=str(post["url"]),
            method="POST",
            fields={str(k): str(v) for k, v in post["fields"].items()},
            headers={},
            expires_at=expires_at,
            max_bytes=max_bytes,
            content_type=content_type,
        )

    async def presign_download(self, key: str, *, expires_seconds: int, filename: str) -> str:
        url = await asyncio.to_thread(
            self.client.generate_presigned_url,
            "get_object",
            Params={
                "Bucket": self.bucket,
                "Key": self._key(key),
                "ResponseContentDisposition": content_disposition(filename),
            },
            ExpiresIn=expires_seconds,
        )
        return str(url)
