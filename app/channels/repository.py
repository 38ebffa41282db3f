"""Every channel query. Tenant queries take a ``TenantScope``; ``channel_addresses`` is a
platform table (ingress must find the tenant before it can bind row-level security),
so the functions that read it across tenants say so in their names and docstrings."""

from __future__ import annotations

import uuid
from collections import defaultdict

from sqlalchemy import delete, func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.channels.models import Channel, ChannelAddress, ChannelNumber
from app.db import tenant_rows
from app.db.tenant import TenantScope
from app.flows.models import Flow
from app.phone_numbers.models import PhoneNumber
from app.queues.models import Queue

# -- channels -----------------------------------------------------------------------------


async def get(
    session: AsyncSession, scope: TenantScope, channel_id: uuid.UUID, *, for_update: bool = False
) -> Channel | None:
    lock: tenant_rows.Lock | None = "update" if for_update else None
    return await tenant_rows.get(session, Channel, scope, channel_id, lock=lock)


async def get_by_name(session: AsyncSession, scope: TenantScope, name: str) -> Channel | None:
    return await tenant_rows.get_by_name(session, Channel, scope, name)


async def list_page(
    session: AsyncSession,
    scope: TenantScope,
    limit: int,
    after_id: uuid.UUID | None,
    channel_type: str | None = None,
) -> list[Channel]:
    where = [Channel.type == channel_type] if channel_type else []
    return await tenant_rows.list_page(session, Channel, scope, limit, after_id, *where)


async def count(session: AsyncSession, scope: TenantScope) -> int:
    stmt = select(func.count()).select_from(Channel).where(Channel.tenant_id == scope.tenant_id)
    return int((await session.execute(stmt)).scalar_one())


# -- phone numbers ------------------------------------------------------------------------


async def active_numbers(
    session: AsyncSession, scope: TenantScope, ids: list[uuid.UUID]
) -> set[uuid.UUID]:
    """Those of ``ids`` that are this tenant's active numbers, share-locked so that a
    concurrent release waits for this transaction."""
    if not ids:
        return set()
    stmt = (
        select(PhoneNumber.id)
        .where(
            PhoneNumber.tenant_id == scope.tenant_id,
            col(PhoneNumber.id).in_(ids),
            PhoneNumber.status == "active",
        )
        .with_for_update(read=True)
    )
    return set((await session.execute(stmt)).scalars())


async def numbers_in_use(
    session: AsyncSession,
    scope: TenantScope,
    ids: list[uuid.UUID],
    channel_type: str,
    except_channel: uuid.UUID | None,
) -> dict[uuid.UUID, str]:
    """Numbers of ``ids`` already serving another channel of ``channel_type``, with
    that channel's name."""
    if not ids:
        return {}
    stmt = (
        select(ChannelNumber.phone_number_id, Channel.name)
        .join(
            Channel,
            (col(Channel.tenant_id) == col(ChannelNumber.tenant_id))
            & (col(Channel.id) == col(ChannelNumber.channel_id)),
        )
        .where(
            ChannelNumber.tenant_id == scope.tenant_id,
            col(ChannelNumber.phone_number_id).in_(ids),
            ChannelNumber.channel_type == channel_type,
        )
    )
    if except_channel is not None:
        stmt = stmt.where(ChannelNumber.channel_id != except_channel)
    return {row[0]: row[1] for row in (await session.execute(stmt)).all()}


async def numbers_of(
    session: AsyncSession, scope: TenantScope, channel_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[uuid.UUID]]:
    out: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    if not channel_ids:
        return out
    stmt = (
        select(ChannelNumber.channel_id, ChannelNumber.phone_number_id)
        .where(
            ChannelNumber.tenant_id == scope.tenant_id,
            col(ChannelNumber.channel_id).in_(channel_ids),
        )
        .order_by(col(ChannelNumber.phone_number_id))
    )
    for channel_id, number_id in (await session.execute(stmt)).all():
        out[channel_id].append(number_id)
    return out


async def replace_numbers(
    session: AsyncSession, scope: TenantScope, channel: Channel, ids: list[uuid.UUID]
) -> None:
    await session.execute(
        delete(ChannelNumber).where(
            col(ChannelNumber.tenant_id) == scope.tenant_id,
            col(ChannelNumber.channel_id) == channel.id,
        )
    )
    session.add_all(
        ChannelNumber(
            tenant_id=scope.tenant_id,
            channel_id=channel.id,
            phone_number_id=number_id,
            channel_type=channel.type,
        )
        for number_id in ids
    )
    await session.flush()


# -- routing targets ----------------------------------------------------------------------


async def queue_channels(
    session: AsyncSession, scope: TenantScope, queue_id: uuid.UUID
) -> list[str] | None:
    """The routing channels the tenant's queue takes, or None if it has no such queue.

    Locked FOR SHARE until the transaction ends: a concurrent delete of the queue, or a
    change of its channels, waits for us and then sees the channel that points at it."""
    stmt = (
        select(col(Queue.channels))
        .where(Queue.tenant_id == scope.tenant_id, Queue.id == queue_id)
        .with_for_update(read=True)
    )
    row = (await session.execute(stmt)).first()
    return list(row[0]) if row is not None else None


async def routing_flow(
    session: AsyncSession, scope: TenantScope, flow_id: uuid.UUID
) -> tuple[str, int | None] | None:
    """(channel, published version) of the tenant's flow, or None if it has no such
    flow. Locked FOR KEY SHARE so that it cannot be deleted under the transaction."""
    stmt = (
        select(col(Flow.channel), col(Flow.published_version))
        .where(Flow.tenant_id == scope.tenant_id, Flow.id == flow_id)
        .with_for_update(read=True, key_share=True)
    )
    row = (await session.execute(stmt)).first()
    return (row[0], row[1]) if row is not None else None


async def routing_to_queue(
    session: AsyncSession, scope: TenantScope, queue_id: uuid.UUID
) -> list[tuple[uuid.UUID, str, str]]:
    """(id, name, type) of the tenant's channels whose inbound conversations go to
    ``queue_id`` (``config.queue_id``), by name."""
    stmt = (
        select(col(Channel.id), col(Channel.name), col(Channel.type))
        .where(
            Channel.tenant_id == scope.tenant_id,
            col(Channel.config).contains({"queue_id": str(queue_id)}),
        )
        .order_by(func.lower(col(Channel.name)))
    )
    return [(row[0], row[1], row[2]) for row in await session.execute(stmt)]


async def routing_to_flow(
    session: AsyncSession, scope: TenantScope, flow_id: uuid.UUID
) -> list[str]:
    """Names of the tenant's channels whose inbound conversations go to ``flow_id``."""
    stmt = (
        select(col(Channel.name))
        .where(
            Channel.tenant_id == scope.tenant_id,
            col(Channel.config).contains({"flow_id": str(flow_id)}),
        )
        .order_by(func.lower(col(Channel.name)))
    )
    return [row[0] for row in await session.execute(stmt)]


async def proactive_rules_on(
    session: AsyncSession, scope: TenantScope, channel_id: uuid.UUID
) -> list[str]:
    """Names of the tenant's proactive rules that apply to ``channel_id``."""
    from app.proactive.models import ProactiveRule

    stmt = (
        select(col(ProactiveRule.name))
        .where(ProactiveRule.tenant_id == scope.tenant_id, ProactiveRule.channel_id == channel_id)
        .order_by(func.lower(col(ProactiveRule.name)))
    )
    return [row[0] for row in await session.execute(stmt)]


# -- inbound addresses (platform table) ---------------------------------------------------


async def address_taken(session: AsyncSession, kind: str, address: str) -> bool:
    """Whether any tenant holds ``address``. Answers yes or no only: the caller must
    never learn which tenant."""
    stmt = select(func.count()).where(
        ChannelAddress.kind == kind, ChannelAddress.address == address
    )
    return bool((await session.execute(stmt)).scalar_one())


async def add_address(
    session: AsyncSession, scope: TenantScope, channel_id: uuid.UUID, kind: str, address: str
) -> None:
    session.add(
        ChannelAddress(kind=kind, address=address, tenant_id=scope.tenant_id, channel_id=channel_id)
    )
    await session.flush()


async def remove_addresses(
    session: AsyncSession, scope: TenantScope, channel_id: uuid.UUID, kind: str
) -> None:
    await session.execute(
        delete(ChannelAddress).where(
            col(ChannelAddress.tenant_id) == scope.tenant_id,
            col(ChannelAddress.channel_id) == channel_id,
            col(ChannelAddress.kind) == kind,
        )
    )


async def resolve_address(
    session: AsyncSession, kind: str, address: str
) -> tuple[uuid.UUID, uuid.UUID] | None:
    """Platform lookup for ingress: the (tenant_id, channel_id) an inbound address
    belongs to, or None. ``kind`` is ``widget_key``, ``email`` (the full address, any
    case) or ``provider_id`` (``"<type>:<provider>:<account id>"``).

    The caller binds the tenant it gets back before reading the channel itself (and
    must still check that the channel is enabled and verify the request's signature).
    """
    if kind == "email":
        address = address.strip().lower()
    stmt = select(ChannelAddress.tenant_id, ChannelAddress.channel_id).where(
        ChannelAddress.kind == kind, ChannelAddress.address == address
    )
    row = (await session.execute(stmt)).first()
    return (row[0], row[1]) if row is not None else None
