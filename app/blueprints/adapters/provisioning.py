"""Blueprint adapters for the provisioning domains, over their own services."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.blueprints.adapters.generic import ServiceAdapter, no_if_match
from app.blueprints.engine import Context
from app.business_hours import repository as hours_repo
from app.business_hours import service as hours_service
from app.business_hours.schemas import BusinessHoursCreate, BusinessHoursUpdate
from app.db.tenant import TenantScope
from app.queues import repository as queue_repo
from app.queues import service as queue_service
from app.queues.schemas import QueueCreate, QueueUpdate
from app.routing_profiles import repository as profile_repo
from app.routing_profiles import service as profile_service
from app.routing_profiles.models import DEFAULT_CHANNEL_COSTS
from app.routing_profiles.schemas import RoutingProfileCreate, RoutingProfileUpdate

ListPage = Callable[[AsyncSession, TenantScope, int, uuid.UUID | None], Awaitable[list[Any]]]


def every(list_page: ListPage) -> Callable[[Context], Awaitable[list[Any]]]:
    """All rows of a kind, through its repository's cursor pagination."""

    async def go(ctx: Context) -> list[Any]:
        out: list[Any] = []
        after: uuid.UUID | None = None
        while True:
            rows = await list_page(ctx.session, ctx.scope, 200, after)
            out += rows[:200]
            if len(rows) <= 200:
                return out
            after = rows[199].id

    return go


business_hours = ServiceAdapter(
    "business_hours",
    BusinessHoursCreate,
    BusinessHoursUpdate,
    every(hours_repo.list_page),
    hours_service.to_read,
    lambda ctx, data: hours_service.create(ctx.session, ctx.scope, data, ctx.plan),  # type: ignore[arg-type]
    lambda ctx, rid, data: hours_service.update(ctx.session, ctx.scope, rid, data, no_if_match()),  # type: ignore[arg-type]
    lambda ctx, rid: hours_service.delete(ctx.session, ctx.scope, rid, no_if_match()),
)

queues = ServiceAdapter(
    "queues",
    QueueCreate,
    QueueUpdate,
    every(queue_repo.list_page),
    queue_service.to_read,
    lambda ctx, data: queue_service.create(ctx.session, ctx.scope, data, ctx.plan),  # type: ignore[arg-type]
    lambda ctx, rid, data: queue_service.update(ctx.session, ctx.scope, rid, data, no_if_match()),  # type: ignore[arg-type]
    lambda ctx, rid: queue_service.delete(ctx.session, ctx.scope, rid, no_if_match()),
    unordered=("required_skills", "channels", "wrap_up_codes"),
)


def _default_costs(item: dict[str, Any]) -> dict[str, Any]:
    if item.get("channel_costs") is None:
        item["channel_costs"] = dict(DEFAULT_CHANNEL_COSTS)
    return item


async def _profiles(ctx: Context) -> list[Any]:
    rows = await every(profile_repo.list_page)(ctx)
    return list(await profile_service.load_many(ctx.session, ctx.scope, rows))


routing_profiles = ServiceAdapter(
    "routing_profiles",
    RoutingProfileCreate,
    RoutingProfileUpdate,
    _profiles,
    profile_service.to_read,
    lambda ctx, data: profile_service.create(ctx.session, ctx.scope, data),  # type: ignore[arg-type]
    lambda ctx, rid, data: profile_service.update(ctx.session, ctx.scope, rid, data, no_if_match()),  # type: ignore[arg-type]
    lambda ctx, rid: profile_service.delete(ctx.session, ctx.scope, rid, no_if_match()),
    unordered=("queues",),
    fill=_default_costs,
)
