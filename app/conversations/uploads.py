"""Files agents send and read: the owner asks for a presigned upload (a pending
attachment of the conversation, of exactly that type and at most that size) and names it
in a reply (``attachment_ids``), where ``claim_upload`` checks what actually arrived;
anyone who reads the conversation downloads its files through a short-lived URL."""

from __future__ import annotations

import uuid
from typing import Literal

import asyncpg

from app.config import Settings
from app.conversations.access import Actor, in_state, load, owner_or_manager, readable
from app.core.errors import Conflict, InvalidInput, NotFound
from app.core.openapi import example, problem
from app.db.base import uuid7
from app.db.tenant import TenantScope
from app.storage.base import InvalidKey, ObjectStore, tenant_key
from app.webchat.schemas import UploadCreate, UploadGrant, UploadTicketRead

DOWNLOAD_SECONDS = 300


class AttachmentChanged(Conflict):
    code = "attachment-changed"


ATTACHMENT_CHANGED = problem(
    "The file was replaced after it was sent",
    example(
        409,
        "attachment-changed",
        "The file was replaced or removed after it was sent, so it is not served.",
    ),
)


async def check_unchanged(store: ObjectStore, key: str, etag: str | None) -> None:
    """Refuse a sent file whose object is no longer the one the message took (its
    presigned upload URL wrote the key again before expiring): what the conversation
    shows as sent is what is served, or nothing. ``etag`` None: stored by the server."""
    if etag is None:
        return
    info = await store.head(key)
    if info is None or info.etag != etag:
        raise AttachmentChanged(
            "The file was replaced or removed after it was sent, so it is not served."
        )


async def new_upload(
    conn: asyncpg.Connection,
    actor: Actor,
    store: ObjectStore,
    settings: Settings,
    conversation_id: uuid.UUID,
    body: UploadCreate,
) -> UploadGrant:
    """A presigned upload for the owning agent's next reply."""
    conv, me = await load(conn, actor, conversation_id)
    owner_or_manager(actor, me, managers=False)
    in_state(conv, "assigned")
    return await grant_upload(
        conn, store, settings, actor.scope, conversation_id, body, uploaded_by="agent"
    )


async def grant_upload(
    conn: asyncpg.Connection,
    store: ObjectStore,
    settings: Settings,
    scope: TenantScope,
    conversation_id: uuid.UUID,
    body: UploadCreate,
    *,
    uploaded_by: Literal["agent", "customer"],
) -> UploadGrant:
    """A pending attachment of the conversation and a presigned upload for exactly that
    type and at most that size (the message that names it checks what arrived); the
    caller has checked who may send files there."""
    content_type = body.content_type.split(";")[0].strip().lower()
    accepted = [t.lower() for t in settings.attachment_content_types]
    if content_type not in accepted:
        raise InvalidInput(
            f"body.content_type: {content_type[:100]!r} is not accepted; "
            f"send one of {', '.join(accepted)}",
            code="content-type-not-allowed",
            field="body.content_type",
        )
    if body.size_bytes > settings.attachment_max_bytes:
        raise InvalidInput(
            f"body.size_bytes: files are limited to {settings.attachment_max_bytes} bytes",
            code="attachment-too-large",
            field="body.size_bytes",
            max_bytes=settings.attachment_max_bytes,
        )
    attachment_id = uuid7()
    try:
        key = tenant_key(
            scope.tenant_id,
            "conversations",
            str(conversation_id),
            str(attachment_id),
            body.filename,
        )
    except InvalidKey as exc:
        raise InvalidInput(f"body.filename: {exc}", field="body.filename") from None
    await conn.execute(
        "INSERT INTO attachments (tenant_id, id, conversation_id, object_key, filename, "
        "content_type, max_bytes, status, uploaded_by, created_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, now())",
        scope.tenant_id,
        attachment_id,
        conversation_id,
        key,
        body.filename,
        content_type,
        body.size_bytes,
        uploaded_by,
    )
    ticket = await store.presign_upload(
        key,
        content_type=content_type,
        max_bytes=body.size_bytes,
        expires_seconds=settings.storage_presign_seconds,
    )
    return UploadGrant(
        attachment_id=attachment_id,
        upload=UploadTicketRead(
            url=ticket.url,
            method=ticket.method,
            fields=ticket.fields,
            headers=ticket.headers,
            expires_at=ticket.expires_at,
            max_bytes=ticket.max_bytes,
            content_type=ticket.content_type,
        ),
    )


async def download_url(
    conn: asyncpg.Connection,
    actor: Actor,
    store: ObjectStore,
    settings: Settings,
    conversation_id: uuid.UUID,
    attachment_id: uuid.UUID,
) -> str:
    """A short-lived download URL of a file sent in the conversation."""
    await readable(conn, actor, conversation_id)
    row = await conn.fetchrow(
        "SELECT object_key, filename, etag FROM attachments WHERE tenant_id = $1 AND id = $2 "
        "AND conversation_id = $3 AND status = 'stored' AND message_id IS NOT NULL",
        actor.scope.tenant_id,
        attachment_id,
        conversation_id,
    )
    if row is None:
        raise NotFound("No such attachment.", code="attachment-not-found")
    await check_unchanged(store, row["object_key"], row["etag"])
    url: str = await store.presign_download(
        row["object_key"],
        expires_seconds=min(settings.storage_presign_seconds, DOWNLOAD_SECONDS),
        filename=row["filename"],
    )
    return url
