"""What a verified webhook does: each customer message into the conversation core, each
delivery receipt onto the message it reports on.

Ingress finds the channel on the platform address table (``provider_id`` addresses,
``"<type>:<provider>:<account id>"``), binds its tenant and reads its secrets
(:func:`find_channel`); once the adapter has verified the request, :func:`apply` writes
its events in one transaction of that tenant.

Replays change nothing: every effect first claims a key in ``webhook_receipts`` (a
provider message id; a receipt's id and status; a WeChat request's timestamp and nonce)
with ``ON CONFLICT DO NOTHING`` in the transaction of the effect, so a provider's retry,
an attacker's replay or two copies racing each other take effect once. Media is fetched
before that transaction (no network call holds database locks), and not at all for a
message already taken.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import asdict, dataclass
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.channels.models import Channel
from app.channels.service import (
    PROVIDER_ID,
    load_for_ingress,
    provider_address,
    read_credentials,
    read_webhook_secret,
)
from app.config import Settings
from app.conversations.receipts import update_delivery
from app.conversations.service import (
    MAX_BODY_CHARS,
    ChannelRef,
    InboundContent,
    receive,
)
from app.core.crypto import Cipher
from app.core.errors import InvalidInput
from app.customers.service import IDENTITY_KIND_OF_CHANNEL, resolve_identity
from app.db.engine import run_after_commit
from app.db.tenant import TenantScope, bind_tenant, mint_scope
from app.messaging.media import FetchedMedia, fetch_media, http_client
from app.messaging.providers import DeliveryReceipt, InboundMessage, WebhookEvent
from app.routing.connection import raw
from app.storage.base import ObjectStore
from app.tenants.models import TenantStatus

log = logging.getLogger("switchboard.messaging.ingest")

SessionFactory = async_sessionmaker[AsyncSession]
_CLOSED = (TenantStatus.suspended.value, TenantStatus.closed.value)
_KEY_MAX = 200  # webhook_receipts.key
RECEIPT_DAYS = 7  # how long a replay is recognised as one
PURGE_ONE_IN = 64  # claims per purge of a channel's expired receipts
_WATERMARK_BATCH = 500  # messages a read watermark may mark at once
_RANK = {"queued": 0, "sent": 1, "delivered": 2, "read": 3}


@dataclass(frozen=True)
class IngressChannel:
    """An enabled messaging channel a webhook named, with its tenant and secrets."""

    scope: TenantScope
    plan: str
    channel: Channel
    credentials: dict[str, str]
    webhook_secret: str | None

    @property
    def account_id(self) -> str:
        return str(self.channel.config.get("provider_account_id") or "")

    @property
    def provider(self) -> str:
        return str(self.channel.config.get("provider") or "")


async def find_channel(
    session: AsyncSession, cipher: Cipher, channel_type: str, provider: str, account_id: str
) -> IngressChannel | None:
    """The enabled channel of ``channel_type`` receiving ``provider``'s webhooks for
    ``account_id``, its tenant bound on ``session``; None when there is none (unknown
    account, disabled channel, suspended or closed tenant: the caller answers all of
    them alike)."""
    address = provider_address(channel_type, provider, account_id)
    if len(address) > 254:
        return None
    # The platform lookup (channel_repo.resolve_address) and the tenant's status and
    # plan (tenant_repo.get) in one round trip, without loading the ORM tenant. A read
    # of platform tables: it needs no tenant bound (nor the transaction, which the
    # session opens with its first statement of its own, bind_tenant's).
    found = await (await raw(session)).fetchrow(
        "SELECT a.tenant_id, a.channel_id, t.status, t.plan FROM channel_addresses a "
        "JOIN tenants t ON t.id = a.tenant_id WHERE a.kind = $1 AND a.address = $2",
        PROVIDER_ID,
        address,
    )
    if found is None or found["status"] in _CLOSED:
        return None
    scope = mint_scope(found["tenant_id"])
    await bind_tenant(session, scope)
    channel = await load_for_ingress(session, scope, found["channel_id"])
    if channel is None or not channel.enabled or channel.type != channel_type:
        return None
    if channel.config.get("provider") != provider:
        return None
    return IngressChannel(
        scope=scope,
        plan=found["plan"],
        channel=channel,
        credentials=read_credentials(cipher, channel),
        webhook_secret=read_webhook_secret(cipher, channel),
    )


# -- keys ---------------------------------------------------------------------------------


def receipt_key(kind: str, *parts: str) -> str:
    """A ``webhook_receipts`` key; long ones (Messenger mids run past 100 characters)
    are hashed to fit."""
    key = ":".join((kind, *parts))
    if len(key) <= _KEY_MAX:
        return key
    return f"{kind}:sha256:{hashlib.sha256(key.encode()).hexdigest()}"


def event_key(event: WebhookEvent) -> str:
    if isinstance(event, InboundMessage):
        return receipt_key("msg", event.provider_message_id)
    if event.provider_message_id is not None:
        return receipt_key("receipt", event.provider_message_id, event.status)
    mark = str(int(event.watermark.timestamp() * 1000)) if event.watermark else "-"
    return receipt_key("watermark", event.recipient_id or "-", event.status, mark)


async def _claim(conn: Any, target: IngressChannel, key: str) -> bool:
    """Take ``key`` for this channel; False when a request before took it."""
    taken = await conn.fetchval(
        "INSERT INTO webhook_receipts (tenant_id, channel_id, key, received_at) "
        "VALUES ($1, $2, $3, now()) ON CONFLICT DO NOTHING RETURNING key",
        target.scope.tenant_id,
        target.channel.id,
        key,
    )
    if taken is not None and secrets.randbelow(PURGE_ONE_IN) == 0:
        # Now and then, forget this channel's receipts past their week (replays that
        # old are refused as stale or are new messages); bounded, under the tenant's RLS.
        await conn.execute(
            "DELETE FROM webhook_receipts WHERE ctid = ANY(ARRAY("
            "SELECT ctid FROM webhook_receipts WHERE tenant_id = $1 AND channel_id = $2 "
            "AND received_at < now() - make_interval(days => $3) LIMIT 1000))",
            target.scope.tenant_id,
            target.channel.id,
            RECEIPT_DAYS,
        )
    return taken is not None


# -- applying events ----------------------------------------------------------------------


@dataclass
class Outcome:
    """What a request did, for the log, the metrics and the sandbox's answer."""

    received: int = 0  # customer messages taken
    duplicates: int = 0  # events (or the whole request) taken before
    receipts: int = 0  # delivery receipts that moved a message's status
    unmatched: int = 0  # receipts for no message of ours (yet)
    refused: int = 0  # messages from an address we cannot take (short codes...)

    @property
    def replayed(self) -> bool:
        return self.duplicates > 0 and not (self.received or self.receipts or self.unmatched)

    def counts(self) -> dict[str, int]:
        return asdict(self)

    def add(self, other: Outcome) -> None:
        """Count ``other`` in too (a request naming several channels)."""
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)


async def take_request(factory: SessionFactory, target: IngressChannel, key: str) -> bool:
    """Take a request's own key (WeChat's timestamp and nonce) in a transaction of its
    own; False when a request before took it."""
    async with factory() as session, session.begin():
        await bind_tenant(session, target.scope)
        return await _claim(await raw(session), target, key)


async def _taken(factory: SessionFactory, target: IngressChannel, keys: list[str]) -> set[str]:
    async with factory() as session, session.begin():
        await bind_tenant(session, target.scope)
        conn = await raw(session)
        rows = await conn.fetch(
            "SELECT key FROM webhook_receipts WHERE tenant_id = $1 AND channel_id = $2 "
            "AND key = ANY($3::text[])",
            target.scope.tenant_id,
            target.channel.id,
            keys,
        )
    return {r["key"] for r in rows}


def needs_prefetch(events: list[WebhookEvent], request_key: str | None) -> bool:
    """Whether :func:`apply` has work to do before its transaction (a replayed
    request to recognise, media to fetch). When not, :func:`apply_bound` may write the
    events in the transaction that found the channel."""
    return request_key is not None or any(isinstance(e, InboundMessage) and e.media for e in events)


async def apply(
    factory: SessionFactory,
    settings: Settings,
    store: ObjectStore,
    target: IngressChannel,
    events: list[WebhookEvent],
    *,
    request_key: str | None = None,
    http: httpx.AsyncClient | None = None,
) -> Outcome:
    """Write a verified request's events for its channel (see the module docstring).
    ``request_key``: the request itself may be taken once (WeChat's nonce)."""
    outcome = Outcome()
    keys = [event_key(e) for e in events]
    taken: set[str] = set()
    if needs_prefetch(events, request_key):
        # Before fetching media (or anything for a replayed request): what is taken.
        taken = await _taken(factory, target, [*keys, *([request_key] if request_key else [])])
    if request_key is not None and request_key in taken:
        outcome.duplicates = max(len(events), 1)
        return outcome
    media: dict[int, FetchedMedia] = {}
    for i, event in enumerate(events):
        if isinstance(event, InboundMessage) and event.media and keys[i] not in taken:
            media[i] = await fetch_media(
                http or http_client(),
                settings,
                channel_type=target.channel.type,
                provider=target.provider,
                account_id=target.account_id,
                credentials=target.credentials,
                media=event.media,
            )
    async with factory() as session:
        async with session.begin():
            await bind_tenant(session, target.scope)
            conn = await raw(session)
            if request_key is not None and not await _claim(conn, target, request_key):
                outcome.duplicates = max(len(events), 1)
                return outcome
            await _write(session, conn, store, target, events, keys, media, outcome)
        await run_after_commit(session)
    return outcome


async def apply_bound(
    session: AsyncSession, store: ObjectStore, target: IngressChannel, events: list[WebhookEvent]
) -> Outcome:
    """:func:`apply` for a request that needs nothing before its transaction
    (:func:`needs_prefetch` is false), in the caller's: the one in which
    :func:`find_channel` bound the target's tenant. The caller commits, then runs the
    session's after-commit hooks."""
    outcome = Outcome()
    conn = await raw(session)
    keys = [event_key(e) for e in events]
    await _write(session, conn, store, target, events, keys, {}, outcome)
    return outcome


async def _write(
    session: AsyncSession,
    conn: Any,
    store: ObjectStore,
    target: IngressChannel,
    events: list[WebhookEvent],
    keys: list[str],
    media: dict[int, FetchedMedia],
    outcome: Outcome,
) -> None:
    for i, event in enumerate(events):
        if isinstance(event, InboundMessage):
            await _message(session, conn, store, target, event, keys[i], media.get(i), outcome)
        else:
            await _receipt(session, conn, target, event, keys[i], outcome)


async def _message(
    session: AsyncSession,
    conn: Any,
    store: ObjectStore,
    target: IngressChannel,
    event: InboundMessage,
    key: str,
    fetched: FetchedMedia | None,
    outcome: Outcome,
) -> None:
    if not await _claim(conn, target, key):
        outcome.duplicates += 1
        return
    kind = IDENTITY_KIND_OF_CHANNEL[target.channel.type]
    try:
        identity = await resolve_identity(
            session, target.scope, kind, event.sender_id, display_name=event.display_name
        )
    except InvalidInput:
        # A short code or an alphanumeric sender: no customer can be reached there.
        # The key stays taken: a retry cannot make it addressable.
        log.warning(
            "inbound message from an address that is not a %s identity",
            kind,
            extra={"tenant.id": str(target.scope.tenant_id), "channel_id": str(target.channel.id)},
        )
        outcome.refused += 1
        return
    text = fetched.annotate(event.text) if fetched else event.text
    if len(text) > MAX_BODY_CHARS:
        text = text[: MAX_BODY_CHARS - 1] + "…"
    received = await receive(
        session,
        target.scope,
        target.plan,
        channel=ChannelRef.of(target.channel),
        identity=identity,
        content=InboundContent(
            text=text,
            attachments=fetched.attachments if fetched else [],
            provider_message_id=event.provider_message_id,
            sent_at=event.sent_at,
            to_address=event.to_address or event.account_id,
        ),
        store=store,
    )
    if received.duplicate:
        outcome.duplicates += 1
    else:
        outcome.received += 1


async def _receipt(
    session: AsyncSession,
    conn: Any,
    target: IngressChannel,
    event: DeliveryReceipt,
    key: str,
    outcome: Outcome,
) -> None:
    """A receipt's key is taken only once it matches a message of ours: a status that
    arrives before the send that it reports on is recorded is not burnt, and the
    provider's retry can still apply it."""
    if event.provider_message_id is not None:
        ids = [event.provider_message_id]
        exists = await conn.fetchval(
            "SELECT 1 FROM messages WHERE tenant_id = $1 AND channel_id = $2 "
            "AND provider_message_id = $3",
            target.scope.tenant_id,
            target.channel.id,
            event.provider_message_id,
        )
        if not exists:
            outcome.unmatched += 1
            return
    else:
        ids = await _under_watermark(conn, target, event)
        if not ids:
            outcome.unmatched += 1
            return
    if not await _claim(conn, target, key):
        outcome.duplicates += 1
        return
    for provider_message_id in ids:
        if await update_delivery(
            session,
            target.scope,
            channel_id=target.channel.id,
            provider_message_id=provider_message_id,
            status=event.status,
            error=event.error,
            at=event.at,
        ):
            outcome.receipts += 1


async def _under_watermark(conn: Any, target: IngressChannel, event: DeliveryReceipt) -> list[str]:
    """Messenger's receipts without message ids: every message we sent to that
    customer on this channel up to the watermark, not yet at that status."""
    if event.recipient_id is None or event.watermark is None:
        return []
    below = [s for s, rank in _RANK.items() if 0 < rank < _RANK.get(event.status, 0)]
    if not below:
        return []
    rows = await conn.fetch(
        "SELECT provider_message_id FROM messages WHERE tenant_id = $1 AND channel_id = $2 "
        "AND direction = 'outbound' AND to_address = $3 AND provider_message_id IS NOT NULL "
        "AND status = ANY($4::text[]) AND sent_at <= $5 ORDER BY sent_at LIMIT $6",
        target.scope.tenant_id,
        target.channel.id,
        event.recipient_id,
        below,
        event.watermark,
        _WATERMARK_BATCH,
    )
    return [r["provider_message_id"] for r in rows]
