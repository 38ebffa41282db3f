from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status
from pydantic import AwareDatetime

from app.audit.service import audit
from app.auth.principal import Principal, require
from app.business_hours import repository, service
from app.business_hours.schemas import (
    BusinessHoursCreate,
    BusinessHoursRead,
    BusinessHoursStatus,
    BusinessHoursUpdate,
)
from app.core.concurrency import IfMatchDep, etag, with_etag
from app.core.openapi import (
    PRECONDITION_FAILED,
    WITH_ETAG,
    example,
    name_taken,
    not_found,
    problem,
)
from app.core.pagination import Page, PageParams, page_of, page_params
from app.db.base import utcnow
from app.db.engine import SessionDep
from app.idempotency.service import IdempotencyDep

router = APIRouter(prefix="/v1/business-hours", tags=["business-hours"])

HoursRead = Annotated[Principal, require("business_hours:read")]
HoursWrite = Annotated[Principal, require("business_hours:write")]

NOT_FOUND = not_found("business-hours-not-found")
NAME_TAKEN = name_taken(
    "business-hours-name-taken", "Business hours named 'US support hours' exist."
)
INVALID = problem(
    "Validation failed: names the field and the reason",
    example(
        422,
        "validation-failed",
        "body.timezone: unknown IANA time zone 'Mars/Olympus'",
        field="body.timezone",
    ),
    example(
        422,
        "validation-failed",
        "body.weekly.mon.1: overlaps an earlier interval of the same day",
        field="body.weekly.mon.1",
    ),
)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=BusinessHoursRead,
    responses={201: WITH_ETAG, 409: NAME_TAKEN, 422: INVALID},
)
async def create_business_hours(
    body: BusinessHoursCreate,
    request: Request,
    session: SessionDep,
    principal: HoursWrite,
    idem: IdempotencyDep,
) -> Response:
    """Create opening hours: a weekly schedule plus dated exceptions (holidays)."""
    if (replay := await idem.replay()) is not None:
        return replay
    hours = await service.create(session, principal.scope, body, principal.tenant.plan)
    audit(request, "business_hours.create", "business_hours", hours.id, name=hours.name)
    return await idem.respond(201, service.to_read(hours), headers={"ETag": etag(hours.version)})


@router.get("", response_model=Page[BusinessHoursRead])
async def list_business_hours(
    session: SessionDep,
    principal: HoursRead,
    page: Annotated[PageParams, Depends(page_params)],
) -> Page[BusinessHoursRead]:
    rows = await repository.list_page(session, principal.scope, page.limit, page.after_id)
    return page_of(rows, page.limit, service.to_read)


@router.get(
    "/{hours_id}",
    response_model=BusinessHoursRead,
    responses={200: WITH_ETAG, 404: NOT_FOUND},
)
async def get_business_hours(
    hours_id: uuid.UUID, session: SessionDep, principal: HoursRead
) -> Response:
    hours = await service.get(session, principal.scope, hours_id)
    return with_etag(service.to_read(hours), hours.version)


@router.get(
    "/{hours_id}/status",
    response_model=BusinessHoursStatus,
    responses={
        404: NOT_FOUND,
        422: problem(
            "`at` is not an RFC 3339 date-time with an offset, or out of range",
            example(
                422,
                "validation-failed",
                "query.at: Input should have timezone info",
                field="query.at",
            ),
        ),
    },
)
async def business_hours_status(
    hours_id: uuid.UUID,
    session: SessionDep,
    principal: HoursRead,
    at: Annotated[
        AwareDatetime | None,
        Query(
            description="RFC 3339 date-time with a UTC offset (default: now), "
            "between 1900 and 9000.",
            examples=["2026-03-08T06:30:00Z"],
        ),
    ] = None,
) -> BusinessHoursStatus:
    """Open or closed at ``at``, and ``until`` when that next changes (the closing
    time if open, the opening time if closed), looking up to 400 days ahead."""
    hours = await service.get(session, principal.scope, hours_id)
    found = service.status_of(hours, at or utcnow())
    return BusinessHoursStatus(
        open=found.open, until=found.until, timezone=hours.timezone, local_time=found.local_time
    )


@router.patch(
    "/{hours_id}",
    response_model=BusinessHoursRead,
    responses={
        200: WITH_ETAG,
        404: NOT_FOUND,
        409: NAME_TAKEN,
        412: PRECONDITION_FAILED,
        422: INVALID,
    },
)
async def update_business_hours(
    hours_id: uuid.UUID,
    body: BusinessHoursUpdate,
    request: Request,
    session: SessionDep,
    principal: HoursWrite,
    if_match: IfMatchDep,
) -> Response:
    """Change the fields given; ``weekly`` and ``exceptions`` are replaced whole."""
    hours = await service.update(session, principal.scope, hours_id, body, if_match)
    audit(
        request,
        "business_hours.update",
        "business_hours",
        hours.id,
        fields=sorted(body.model_fields_set),
    )
    return with_etag(service.to_read(hours), hours.version)


@router.delete(
    "/{hours_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        404: NOT_FOUND,
        409: problem(
            "Queues use these hours, or contact flows check them (in a draft or the "
            "published version)",
            example(
                409,
                "business-hours-in-use",
                "Queues or contact flows use these business hours; point them "
                "elsewhere first (a flow: change its draft and publish it).",
                used_by=[
                    {
                        "type": "queue",
                        "id": "019a2b7c-0000-7000-8000-0000000000a1",
                        "name": "Billing (EN)",
                    },
                    {
                        "type": "flow",
                        "id": "019a2b7c-0000-7000-8000-0000000000f1",
                        "name": "Main line",
                        "as": "published version 2",
                    },
                ],
            ),
        ),
        412: PRECONDITION_FAILED,
    },
)
async def delete_business_hours(
    hours_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    principal: HoursWrite,
    if_match: IfMatchDep,
) -> Response:
    hours = await service.delete(session, principal.scope, hours_id, if_match)
    audit(request, "business_hours.delete", "business_hours", hours.id, name=hours.name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
