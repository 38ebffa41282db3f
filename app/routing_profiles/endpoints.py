from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.responses import JSONResponse

from app.audit.service import audit
from app.auth.principal import Principal, require
from app.core.concurrency import IfMatchDep, etag
from app.core.errors import PROBLEM_JSON
from app.core.pagination import Page, PageParams, encode_cursor, page_params
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

ETAG_HEADER = {"ETag": {"description": "The version, for If-Match", "schema": {"type": "string"}}}
_TITLES = {
    403: "Forbidden",
    409: "Conflict",
    412: "Precondition failed",
    422: "Validation failed",
}


def _example(status_code: int, code: str, detail: str, field: str | None = None) -> dict[str, Any]:
    value: dict[str, Any] = {
        "type": f"https://switchboard.dev/problems/{code}",
        "title": _TITLES[status_code],
        "status": status_code,
        "code": code,
        "detail": detail,
        "instance": "/v1/routing-profiles",
        "request_id": "0f8c2d1e6b7a4c59",
    }
    if field:
        value["field"] = field
    return {"summary": code, "value": value}


def _problems(description: str, *examples: dict[str, Any]) -> dict[str, Any]:
    """An OpenAPI response: problem+json, with an example of each code it can carry."""
    return {
        "description": description,
        "content": {
            PROBLEM_JSON: {
                "schema": {"$ref": "#/components/schemas/Problem"},
                "examples": {e["summary"]: e for e in examples},
            }
        },
    }


NAME_TAKEN = _problems(
    "A profile of this name exists",
    _example(
        409, "routing-profile-name-taken", "A routing profile named 'Tier 1' exists.", "body.name"
    ),
)
STALE = _problems(
    "If-Match names an older version",
    _example(
        412,
        "precondition-failed",
        'The resource changed (now "3"); fetch it again and retry.',
        "header.If-Match",
    ),
)
INVALID = _problems(
    "Validation failed, naming the field",
    _example(
        422,
        "validation-failed",
        "body.capacity_points: Input should be less than or equal to 1000",
        "body.capacity_points",
    ),
    _example(
        422,
        "cost-exceeds-capacity",
        "body.channel_costs.voice: 120 exceeds capacity_points (100); a contact of this "
        "channel could never be offered",
        "body.channel_costs.voice",
    ),
    _example(
        422,
        "duplicate-queue",
        "body.queues.1.queue_id: the queue is listed twice",
        "body.queues.1.queue_id",
    ),
    _example(
        422,
        "unknown-queue",
        "body.queues.0.queue_id: no such queue in this tenant",
        "body.queues.0.queue_id",
    ),
)
IN_USE = _problems(
    "Agents use this profile",
    _example(
        409,
        "routing-profile-in-use",
        "3 agent(s) use this routing profile; move them to another first.",
    ),
)


def _ok(view: RoutingProfileView, status_code: int = 200) -> JSONResponse:
    return JSONResponse(
        service.to_read(view).model_dump(mode="json"),
        status_code=status_code,
        headers={"ETag": etag(view.profile.version)},
    )


def _changed(body: RoutingProfileUpdate) -> dict[str, Any]:
    return body.model_dump(mode="json", exclude_unset=True)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=RoutingProfileRead,
    responses={201: {"headers": ETAG_HEADER}, 409: NAME_TAKEN, 422: INVALID},
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
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    views = await service.load_many(session, principal.scope, rows)
    return Page(
        items=[service.to_read(v) for v in views],
        next_cursor=encode_cursor(rows[-1].id) if more else None,
    )


@router.get(
    "/{routing_profile_id}",
    response_model=RoutingProfileRead,
    responses={200: {"headers": ETAG_HEADER}},
)
async def get_routing_profile(
    routing_profile_id: uuid.UUID, session: SessionDep, principal: ProfilesRead
) -> Response:
    return _ok(await service.load(session, principal.scope, routing_profile_id))


@router.patch(
    "/{routing_profile_id}",
    response_model=RoutingProfileRead,
    responses={200: {"headers": ETAG_HEADER}, 409: NAME_TAKEN, 412: STALE, 422: INVALID},
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
        412: STALE,
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
