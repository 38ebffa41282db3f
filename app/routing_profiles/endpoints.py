from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response, status

from app.audit.service import audit
from app.auth.principal import Principal, require
from app.core.concurrency import IfMatchDep, etag, with_etag
from app.core.openapi import PRECONDITION_FAILED, WITH_ETAG, example, name_taken, problem
from app.core.pagination import Page, PageParams, page_params, page_rows
from app.db.engine import SessionDep
from app.idempotency.service import IdempotencyDep
from app.routing_profiles import repository, service
from app.routing_profiles.schemas import (
    RoutingProfileCreate,
    RoutingProfileRead,
    RoutingProfileUpdate,
)
from app.routing_profiles.service import RoutingProfileView

router = APIRouter(prefix="/v1/routing-profiles", tags=["routing-profiles"])

ProfilesRead = Annotated[Principal, require("routing_profiles:read")]
ProfilesWrite = Annotated[Principal, require("routing_profiles:write")]

NAME_TAKEN = name_taken("routing-profile-name-taken", "A routing profile named 'Tier 1' exists.")
INVALID = problem(
    "Validation failed, naming the field",
    example(
        422,
        "validation-failed",
        "body.capacity_points: Input should be less than or equal to 1000",
        field="body.capacity_points",
    ),
    example(
        422,
        "cost-exceeds-capacity",
        "body.channel_costs.voice: 120 exceeds capacity_points (100); a contact of this "
        "channel could never be offered",
        field="body.channel_costs.voice",
    ),
    example(
        422,
        "duplicate-queue",
        "body.queues.1.queue_id: the queue is listed twice",
        field="body.queues.1.queue_id",
    ),
    example(
        422,
        "unknown-queue",
        "body.queues.0.queue_id: no such queue in this tenant",
        field="body.queues.0.queue_id",
    ),
)
IN_USE = problem(
    "Agents use this profile",
    example(
        409,
        "routing-profile-in-use",
        "3 agent(s) use this routing profile; move them to another first.",
    ),
)


def _ok(view: RoutingProfileView) -> Response:
    return with_etag(service.to_read(view), view.profile.version)


def _changed(body: RoutingProfileUpdate) -> dict[str, Any]:
    return body.model_dump(mode="json", exclude_unset=True)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=RoutingProfileRead,
    responses={201: WITH_ETAG, 409: NAME_TAKEN, 422: INVALID},
)
async def create_routing_profile(
    body: RoutingProfileCreate,
    request: Request,
    session: SessionDep,
    principal: ProfilesWrite,
    idem: IdempotencyDep,
) -> Response:
    """Create a routing profile: a capacity budget, channel costs and the queues served."""
    if (replay := await idem.replay()) is not None:
        return replay
    view = await service.create(session, principal.scope, body)
    audit(request, "routing_profile.create", "routing_profile", view.profile.id, name=body.name)
    return await idem.respond(
        201, service.to_read(view), headers={"ETag": etag(view.profile.version)}
    )


@router.get("", response_model=Page[RoutingProfileRead])
async def list_routing_profiles(
    session: SessionDep,
    principal: ProfilesRead,
    page: Annotated[PageParams, Depends(page_params)],
) -> Page[RoutingProfileRead]:
    """This tenant's routing profiles, newest first."""
    rows = await repository.list_page(session, principal.scope, page.limit, page.after_id)
    rows, next_cursor = page_rows(rows, page.limit)
    views = await service.load_many(session, principal.scope, rows)
    return Page(items=[service.to_read(v) for v in views], next_cursor=next_cursor)


@router.get(
    "/{routing_profile_id}",
    response_model=RoutingProfileRead,
    responses={200: WITH_ETAG},
)
async def get_routing_profile(
    routing_profile_id: uuid.UUID, session: SessionDep, principal: ProfilesRead
) -> Response:
    return _ok(await service.load(session, principal.scope, routing_profile_id))


@router.patch(
    "/{routing_profile_id}",
    response_model=RoutingProfileRead,
    responses={200: WITH_ETAG, 409: NAME_TAKEN, 412: PRECONDITION_FAILED, 422: INVALID},
)
async def update_routing_profile(
    routing_profile_id: uuid.UUID,
    body: RoutingProfileUpdate,
    request: Request,
    session: SessionDep,
    principal: ProfilesWrite,
    if_match: IfMatchDep,
) -> Response:
    """Change a profile. channel_costs and queues, when sent, replace what was there."""
    view = await service.update(session, principal.scope, routing_profile_id, body, if_match)
    audit(request, "routing_profile.update", "routing_profile", view.profile.id, **_changed(body))
    return _ok(view)


@router.delete(
    "/{routing_profile_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        409: IN_USE,
        412: PRECONDITION_FAILED,
    },
)
async def delete_routing_profile(
    routing_profile_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    principal: ProfilesWrite,
    if_match: IfMatchDep,
) -> Response:
    profile = await service.delete(session, principal.scope, routing_profile_id, if_match)
    audit(request, "routing_profile.delete", "routing_profile", profile.id, name=profile.name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
