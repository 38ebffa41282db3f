"""Object storage (attachments, recordings): S3 or the embedded local directory."""

from app.storage.base import (
    InvalidKey,
    ListedObject,
    ObjectInfo,
    ObjectMissing,
    ObjectStore,
    UploadTicket,
    key_belongs_to,
    safe_filename,
    tenant_key,
    tenant_prefix,
)

__all__ = [
    "InvalidKey",
    "ListedObject",
    "ObjectInfo",
    "ObjectMissing",
    "ObjectStore",
    "UploadTicket",
    "key_belongs_to",
    "safe_filename",
    "tenant_key",
    "tenant_prefix",
]
