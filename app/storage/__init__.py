"""Object storage (attachments, recordings): S3 or the embedded local directory."""

from app.storage.base import (
    InvalidKey,
    ObjectInfo,
    ObjectMissing,
    ObjectStore,
    UploadTicket,
    key_belongs_to,
    safe_filename,
    tenant_key,
)

__all__ = [
    "InvalidKey",
    "ObjectInfo",
    "ObjectMissing",
    "ObjectStore",
    "UploadTicket",
    "key_belongs_to",
    "safe_filename",
    "tenant_key",
]
