"""The configured object store (``SWITCHBOARD_STORAGE_BACKEND``)."""

from __future__ import annotations

from pathlib import Path

from app.config import Settings
from app.core.crypto import load_key_text, parse_keys
from app.storage.base import ObjectStore
from app.storage.local import LocalObjectStore, url_signing_secret
from app.storage.s3 import S3ObjectStore


def local_dir(settings: Settings) -> Path:
    return (settings.storage_dir or settings.data_dir / "objects").resolve()


def store_for(settings: Settings) -> ObjectStore:
    """S3 (boto3, credentials from the usual AWS chain) or the local directory, which
    encrypts with the configured encryption keys and signs its URLs with a secret
    derived from the active one."""
    if settings.storage_backend == "s3":
        return S3ObjectStore(
            settings.s3_bucket,
            prefix=settings.s3_prefix,
            region=settings.s3_region,
            endpoint_url=settings.s3_endpoint_url,
            sse=settings.s3_sse,
            kms_key_id=settings.s3_kms_key_id,
        )
    keys = parse_keys(load_key_text(settings))
    return LocalObjectStore(
        local_dir(settings),
        url_signing_secret(keys[0]),
        settings.public_url,
        keys=keys,
    )
