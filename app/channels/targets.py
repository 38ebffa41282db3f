"""A channel's routing target: where its inbound conversations go.

A queue that takes the channel's routing channel (``validation.ROUTING_CHANNEL``) or a
published contact flow for that channel (or any), at most one (``config.queue_id`` /
``config.flow_id``); with neither the channel opens no conversations. The target is
share-locked while it is checked, and the queues and flows services refuse to delete (or
stop a queue taking the channel in) a target a channel points at.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.channels import repository
from app.channels.models import Channel
from app.channels.validation import ROUTING_CHANNEL
from app.core.errors import InvalidInput
from app.db.tenant import TenantScope

# The config keys of a routing target: one of them set, or neither.
KEYS = frozenset({"queue_id", "flow_id"})


def as_json(value: uuid.UUID | None) -> str | None:
    return str(value) if value is not None else None


def _one_target(field_path: str, other: str | None = None) -> InvalidInput:
    detail = "give queue_id or flow_id, not both"
    if other is not None:
        detail += f" (the channel routes to a {other}: send {other}_id null to switch)"
    return InvalidInput(f"{field_path}: {detail}", field=field_path)


async def check_new(
    session: AsyncSession,
    scope: TenantScope,
    channel_type: str,
    queue_id: uuid.UUID | None,
    flow_id: uuid.UUID | None,
) -> dict[str, str | None]:
    """The target of a new channel, checked, as its config keys."""
    if queue_id is not None and flow_id is not None:
        raise _one_target("body.config.flow_id")
    await _check(session, scope, channel_type, queue_id, flow_id)
    return {"queue_id": as_json(queue_id), "flow_id": as_json(flow_id)}


async def check_change(
    session: AsyncSession, scope: TenantScope, channel: Channel, config_sent: Mapping[str, Any]
) -> None:
    """A PATCH's target keys, if it sends any: the result has one target at most, so
    switching sends null for the old one."""
    if not KEYS & config_sent.keys():
        return
    queue_id, flow_id = config_sent.get("queue_id"), config_sent.get("flow_id")
    if queue_id is not None and flow_id is not None:
        raise _one_target("body.config.flow_id")
    if queue_id is not None and "flow_id" not in config_sent and channel.config.get("flow_id"):
        raise _one_target("body.config.queue_id", "flow")
    if flow_id is not None and "queue_id" not in config_sent and channel.config.get("queue_id"):
        raise _one_target("body.config.flow_id", "queue")
    await _check(session, scope, channel.type, queue_id, flow_id)


async def _check(
    session: AsyncSession,
    scope: TenantScope,
    channel_type: str,
    queue_id: uuid.UUID | None,
    flow_id: uuid.UUID | None,
) -> None:
    """The queue (or flow) given is this tenant's and can take the channel's
    conversations; another tenant's id reads exactly like one that does not exist. The
    target stays share-locked until the transaction ends."""
    routing_channel = ROUTING_CHANNEL[channel_type]
    if queue_id is not None:
        where = "body.config.queue_id"
        takes = await repository.queue_channels(session, scope, queue_id)
        if takes is None:
            raise InvalidInput(
                f"{where}: no such queue in this tenant", code="unknown-reference", field=where
            )
        if routing_channel not in takes:
            raise InvalidInput(
                f"{where}: the queue takes {', '.join(takes)}, not {routing_channel}; a "
                f"{channel_type} channel needs a queue that takes {routing_channel}",
                code="channel-not-taken",
                field=where,
            )
    if flow_id is not None:
        where = "body.config.flow_id"
        flow = await repository.routing_flow(session, scope, flow_id)
        if flow is None:
            raise InvalidInput(
                f"{where}: no such flow in this tenant", code="unknown-reference", field=where
            )
        flow_channel, published = flow
        if published is None:
            raise InvalidInput(
                f"{where}: the flow has never been published; publish it first",
                code="flow-not-published",
                field=where,
            )
        # As contacts check it (app/routing/contacts.py): a flow is for one channel or any.
        if flow_channel not in ("any", routing_channel):
            raise InvalidInput(
                f"{where}: the flow is for {flow_channel} contacts, not {routing_channel}",
                code="channel-not-taken",
                field=where,
            )
