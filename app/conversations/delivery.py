"""Delivery of outbound messages: the senders registered per channel type (email, SMS,
WhatsApp, WeChat, Messenger), delivery after commit (a lease on the message, the
provider called outside any transaction, the outcome recorded in the conversation's
lock order), retries with back-off, and the sweeper that finds what was never
delivered (``outbound_work``). Senders register with :func:`register_sender`."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.conversations.events import post_event
from app.conversations.receipts import apply_early_receipts
from app.conversations.service import ChannelRef
from app.conversations.uploads import AttachmentChanged, check_unchanged
from app.conversations.windows import messaging_tag
from app.core.metrics import MESSAGES
from app.db.base import utcnow
from app.db.tenant import bind_tenant, mint_scope
from app.routing.connection import raw
from app.storage.base import ObjectStore

log = logging.getLogger("switchboard.delivery")

MAX_ATTEMPTS = 5
RETRY_AFTER_SECONDS = 30.0
SEND_LEASE_SECONDS = 120.0  # longer than any provider call (their timeouts are 15 s)


@dataclass
class OutboundContext:
    """What a sender needs: the message, where it goes, and the channel's secrets."""

    settings: Settings
    http: httpx.AsyncClient
    store: ObjectStore
    tenant_id: uuid.UUID
    channel: ChannelRef
    credentials: dict[str, str]
    message_id: uuid.UUID
    conversation_id: uuid.UUID
    to_address: str
    text: str
    attachments: list[dict[str, Any]]
    subject: str | None = None
    email_message_id: str | None = None
    email_in_reply_to: str | None = None
    email_references: list[str] = field(default_factory=list)
    # Our address the customer last wrote to on this channel (send from it).
    reply_from: str | None = None
    # The channel's own phone numbers (E.164): SMS sends from the first when the
    # customer never wrote to one (app/messaging/senders.py).
    channel_numbers: list[str] = field(default_factory=list)
    # WhatsApp: an approved template ({name, language, parameters}) to send instead of
    # ``text`` (which then holds only its readable rendering).
    template: dict[str, Any] | None = None
    # Messenger: the message tag to send with (HUMAN_AGENT: an agent's reply more than
    # 24 hours after the customer's last message); None for a standard response.
    messaging_tag: str | None = None


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str | None
    status: str = "sent"  # sent | delivered


class SendFailed(Exception):
    """A provider refused the message; ``retryable`` when trying later may work."""

    def __init__(self, detail: str, *, retryable: bool) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retryable = retryable


class OutboundSender(Protocol):
    async def send(self, ctx: OutboundContext) -> SendResult: ...


_SENDERS: dict[str, OutboundSender] = {}


def register_sender(channel_type: str, sender: OutboundSender) -> None:
    _SENDERS[channel_type] = sender


# The channels' sender modules register themselves when imported.
SENDER_MODULES = ("app.emailing.outbound", "app.messaging.senders")


def sender_for(channel_type: str) -> OutboundSender | None:
    if channel_type not in _SENDERS:
        import importlib

        for module in SENDER_MODULES:
            importlib.import_module(module)
    return _SENDERS.get(channel_type)


_TASKS: set[asyncio.Task[None]] = set()


def spawn(work: Awaitable[object]) -> None:
    """Run delivery in the background (the request does not wait for the provider)."""

    async def run() -> None:
        await work

    task = asyncio.get_running_loop().create_task(run())
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)


async def drain() -> None:
    """Wait for deliveries in flight (tests, shutdown)."""
    while _TASKS:
        await asyncio.gather(*list(_TASKS), return_exceptions=True)


HttpFactory = Callable[[], httpx.AsyncClient]


async def deliver_one(
    factory: async_sessionmaker[AsyncSession],
    settings: Settings,
    store: ObjectStore,
    tenant_id: uuid.UUID,
    message_id: uuid.UUID,
) -> str:
    """Deliver one queued message and record the outcome; returns the new status. Never
    raises: a failure is on the message (and its event log) for the agent to see."""
    from app.channels.models import Channel
    from app.channels.service import read_credentials
    from app.core.crypto import load_cipher

    scope = mint_scope(tenant_id)
    # 1. Claim: a lease on the message (next_attempt_at), so no other process sends it
    #    while the provider is called; no row lock is held during that call.
    async with factory() as session, session.begin():
        await bind_tenant(session, scope)
        conn = await raw(session)
        msg = await conn.fetchrow(
            "UPDATE messages SET next_attempt_at = now() + make_interval(secs => $3), "
            "attempts = attempts + 1 WHERE tenant_id = $1 AND id = $2 AND status = 'queued' "
            "AND (next_attempt_at IS NULL OR next_attempt_at <= now()) RETURNING *",
            tenant_id,
            message_id,
            SEND_LEASE_SECONDS,
        )
        if msg is None:
            return "gone"  # delivered, failed, or in flight elsewhere
        channel = await session.get(Channel, (tenant_id, msg["channel_id"]))
        sender = sender_for(msg["channel"])
        ctx = None
        if channel is not None and channel.enabled and sender is not None:
            refs = msg["email_references"]
            template = msg["template"]
            ctx = OutboundContext(
                settings=settings,
                http=_http_client(),
                store=store,
                tenant_id=tenant_id,
                channel=ChannelRef.of(channel),
                credentials=read_credentials(load_cipher(settings), channel),
                message_id=message_id,
                conversation_id=msg["conversation_id"],
                to_address=msg["to_address"],
                text=msg["body"],
                attachments=await _with_object_keys(conn, msg),
                subject=msg["subject"],
                email_message_id=msg["email_message_id"],
                email_in_reply_to=msg["email_in_reply_to"],
                email_references=json.loads(refs) if isinstance(refs, str) else refs,
                reply_from=await conn.fetchval(
                    "SELECT to_address FROM messages WHERE tenant_id = $1 "
                    "AND conversation_id = $2 AND channel_id = $3 AND direction = 'inbound' "
                    "AND to_address IS NOT NULL ORDER BY created_at DESC LIMIT 1",
                    tenant_id,
                    msg["conversation_id"],
                    msg["channel_id"],
                ),
                channel_numbers=await _channel_numbers(conn, tenant_id, msg["channel_id"]),
                template=json.loads(template) if isinstance(template, str) else template,
                messaging_tag=await messaging_tag(conn, msg),
            )
    # 2. Send, outside any transaction.
    error: str | None = None
    retryable = False
    result: SendResult | None = None
    if channel is None or not channel.enabled:
        error = "the channel was deleted or disabled"
    elif sender is None or ctx is None:
        error = f"no sender for {msg['channel']} messages"
    else:
        try:
            for item in ctx.attachments:
                if item.get("object_key"):
                    try:
                        await check_unchanged(ctx.store, item["object_key"], item.get("etag"))
                    except AttachmentChanged as exc:
                        raise SendFailed(
                            f"attachment {item.get('attachment_id')}: {exc.detail}",
                            retryable=False,
                        ) from None
            result = await sender.send(ctx)
        except SendFailed as exc:
            error, retryable = exc.detail, exc.retryable
        except Exception as exc:  # a sender bug or a network error: try again later
            error, retryable = f"{type(exc).__name__}: {exc}", True
            log.warning("outbound delivery failed", extra={"message_id": str(message_id)})
    # 3. Record, in the conversation's lock order (conversation, then message).
    attempts = msg["attempts"]
    async with factory() as session, session.begin():
        await bind_tenant(session, scope)
        conn = await raw(session)
        await conn.execute(
            "SELECT 1 FROM conversations WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
            tenant_id,
            msg["conversation_id"],
        )
        if result is not None:
            status = result.status
            await conn.execute(
                "UPDATE messages SET status = $3, provider_message_id = $4, sent_at = $5, "
                "error = NULL, next_attempt_at = NULL WHERE tenant_id = $1 AND id = $2",
                tenant_id,
                message_id,
                status,
                result.provider_message_id,
                utcnow(),
            )
            if result.provider_message_id:
                await apply_early_receipts(
                    conn, scope, msg["channel_id"], message_id, result.provider_message_id
                )
        elif retryable and attempts < MAX_ATTEMPTS:
            status = "queued"
            due = utcnow() + timedelta(seconds=RETRY_AFTER_SECONDS * 2 ** (attempts - 1))
            await touch_outbound(conn, tenant_id, due)
            await conn.execute(
                "UPDATE messages SET error = $3, next_attempt_at = $4 "
                "WHERE tenant_id = $1 AND id = $2",
                tenant_id,
                message_id,
                (error or "")[:500],
                due,
            )
        else:
            status = "failed"
            await conn.execute(
                "UPDATE messages SET status = 'failed', error = $3, next_attempt_at = NULL "
                "WHERE tenant_id = $1 AND id = $2",
                tenant_id,
                message_id,
                (error or "")[:500],
            )
        outcome = "retry" if status == "queued" else status
        MESSAGES.inc(tenant_id, msg["channel"], "outbound", outcome)
        if status != "queued":
            await post_event(
                conn,
                scope,
                msg["conversation_id"],
                "message.status",
                {"message_id": str(message_id), "status": status, "error": error},
            )
        return status


async def _with_object_keys(conn: Any, msg: Any) -> list[dict[str, Any]]:
    """The message's attachments, each with its ``object_key`` (for senders only)."""
    items = msg["attachments"]
    items = json.loads(items) if isinstance(items, str) else items
    rows = {
        str(r["id"]): r
        for r in await conn.fetch(
            "SELECT id, object_key, etag FROM attachments WHERE tenant_id = $1 AND message_id = $2",
            msg["tenant_id"],
            msg["id"],
        )
    }
    out = []
    for a in items:
        row = rows.get(str(a.get("attachment_id")))
        out.append(
            {
                **a,
                "object_key": row["object_key"] if row else None,
                "etag": row["etag"] if row else None,
            }
        )
    return out


async def _channel_numbers(conn: Any, tenant_id: uuid.UUID, channel_id: uuid.UUID) -> list[str]:
    rows = await conn.fetch(
        "SELECT p.e164 FROM channel_numbers c JOIN phone_numbers p "
        "ON p.tenant_id = c.tenant_id AND p.id = c.phone_number_id "
        "WHERE c.tenant_id = $1 AND c.channel_id = $2 AND p.status = 'active' ORDER BY p.e164",
        tenant_id,
        channel_id,
    )
    return [r["e164"] for r in rows]


_HTTP: httpx.AsyncClient | None = None


def _http_client() -> httpx.AsyncClient:
    """One pooled client per process for provider calls."""
    global _HTTP
    if _HTTP is None or _HTTP.is_closed:
        _HTTP = httpx.AsyncClient(timeout=httpx.Timeout(15.0, connect=5.0))
    return _HTTP


async def touch_outbound(conn: Any, tenant_id: uuid.UUID, due_at: Any) -> None:
    await conn.execute(
        "INSERT INTO outbound_work (tenant_id, due_at) VALUES ($1, $2) "
        "ON CONFLICT (tenant_id) DO UPDATE SET due_at = LEAST(outbound_work.due_at, $2)",
        tenant_id,
        due_at,
    )


async def sweep_once(
    factory: async_sessionmaker[AsyncSession], settings: Settings, store: ObjectStore
) -> int:
    """Deliver what is due across tenants; returns how many messages were tried.
    Several API processes may sweep: a tenant is claimed (SKIP LOCKED, due moved on)
    before its messages are tried."""
    async with factory() as session, session.begin():
        conn = await raw(session)
        due = await conn.fetch(
            "UPDATE outbound_work w SET due_at = now() + interval '60 seconds' "
            "FROM (SELECT tenant_id FROM outbound_work WHERE due_at <= now() "
            "      ORDER BY due_at LIMIT 20 FOR UPDATE SKIP LOCKED) d "
            "WHERE w.tenant_id = d.tenant_id RETURNING w.tenant_id"
        )
    tried = 0
    for row in due:
        tenant_id = row["tenant_id"]
        tried += await retry_due(factory, settings, store, tenant_id, older_than=timedelta(0))
        scope = mint_scope(tenant_id)
        async with factory() as session, session.begin():
            await bind_tenant(session, scope)
            conn = await raw(session)
            left = await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM messages WHERE tenant_id = $1 AND status = 'queued')",
                tenant_id,
            )
            if not left:
                await conn.execute("DELETE FROM outbound_work WHERE tenant_id = $1", tenant_id)
    return tried


async def run_sweeper(
    factory: async_sessionmaker[AsyncSession],
    settings: Settings,
    store: ObjectStore,
    interval: float = 5.0,
) -> None:
    """The API process's delivery safety net (cancelled at shutdown)."""
    while True:
        try:
            await sweep_once(factory, settings, store)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("outbound sweep failed: %r", exc)
        await asyncio.sleep(interval)


async def retry_due(
    factory: async_sessionmaker[AsyncSession],
    settings: Settings,
    store: ObjectStore,
    tenant_id: uuid.UUID,
    *,
    older_than: timedelta = timedelta(seconds=RETRY_AFTER_SECONDS),
    limit: int = 100,
) -> int:
    """Deliver a tenant's messages still queued after ``older_than`` (a crash between
    commit and delivery, or a transient provider failure). Returns how many were tried."""
    scope = mint_scope(tenant_id)
    async with factory() as session, session.begin():
        await bind_tenant(session, scope)
        conn = await raw(session)
        ids = await conn.fetch(
            "SELECT id FROM messages WHERE tenant_id = $1 AND status = 'queued' "
            "AND created_at < $2 AND (next_attempt_at IS NULL OR next_attempt_at <= now()) "
            "ORDER BY created_at LIMIT $3",
            tenant_id,
            utcnow() - older_than,
            limit,
        )
    for row in ids:
        await deliver_one(factory, settings, store, tenant_id, row["id"])
    return len(ids)
