"""Object-storage fixtures: a moto S3 server for the session, a bucket, and stores of
both backends."""

from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.storage.local import LocalObjectStore, url_signing_secret
from app.storage.s3 import S3ObjectStore
from tests.moto_s3 import aws_client, start_moto


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    server, endpoint_url = start_moto()
    try:
        yield endpoint_url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3(moto_endpoint: str) -> Any:
    """A boto3 S3 client on the moto server (to look at what the store wrote)."""
    return aws_client("s3", moto_endpoint)


@pytest.fixture(scope="session")
def bucket(s3: Any) -> str:
    name = "switchboard-test"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_store(s3: Any, bucket: str) -> S3ObjectStore:
    # A prefix of its own per test: moto's bucket is shared by the session.
    return S3ObjectStore(bucket, prefix=f"t-{uuid.uuid4().hex[:8]}", client=s3)


@pytest.fixture
def encryption_key() -> bytes:
    return secrets.token_bytes(32)


@pytest.fixture
def local_store(tmp_path: Path, encryption_key: bytes) -> LocalObjectStore:
    return LocalObjectStore(
        tmp_path / "objects",
        url_signing_secret(encryption_key),
        "http://127.0.0.1:8000",
        keys=[encryption_key],
    )


def b64_key(key: bytes) -> str:
    return base64.b64encode(key).decode()
