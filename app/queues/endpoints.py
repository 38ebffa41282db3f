from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.responses import JSONResponse

from app.audit.service import audit
from app.auth.principal import Principal, require
from app.core.concurrency import IfMatchDep, etag
from app.core.openapi import ETAG_HEADER, STALE_IF_MATCH, problem
from app.core.pagination import Page, PageParams, encode_cursor, page_params
from app.db.engine import SessionDep
from app.idempotency.service import IdempotencyDep
from app.queues import repository, service
from app.queues.models import Queue
from app.queues.schemas import QueueCreate, QueueRead, QueueUpdate

router = APIRouter(prefix="/v1/queues", tags=["queues"])

QueuesRead = Annotated[Principal, require("queues:read")]
QueuesWrite = Annotated[Principal, require("queues:write")]

NOT_FOUND = problem(
    404, "No such queue in this tenant", {"code": "queue-not-found", "detail": "No such queue."}
)
NAME_TAKEN = problem(
    409,
    "The name is taken in this tenant",
    {
        "code": "queue-name-taken",
        "detail": "A queue named 'Billing (EN)' exists.",
        "field": "body.name",
    },
)
INVALID = problem(
    422,
    "Validation failed: names the field and the reason",
    {
        "code": "validation-failed",
        "detail": "body.relaxation_steps.1.skill_id: is not one of the queue's required_skills",
        "field": "body.relaxation_steps.1.skill_id",
    },
    {
        "code": "unknown-reference",
        "detail": "body.business_hours_id: no such business hours in this tenant",
        "field": "body.business_hours_id",
    },
    {
        "code": "overflow-loop",
        "detail": "body.overflow_queue_id: that queue overflows back to this one (a loop)",
        "field": "body.overflow_queue_id",
    },
)
QUOTA = problem(
    403,
    "The plan's queue quota is used up, or the caller lacks queues:write",
    {
        "code": "quota-exceeded",
        "detail": "Your plan allows 5 queues; 5 in use.",
        "resource": "queues",
        "limit": 5,
        "current": 5,
    },
    {
        "code": "insufficient-scope",
        "detail": "This call needs the scope 'queues:write'.",
        "required_scope": "queues:write",
    },
)


def _json(queue: Queue) -> JSONResponse:
    return JSONResponse(
        service.to_read(queue).model_dump(mode="json"), headers={"ETag": etag(queue.version)}
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=QueueRead,
    responses={201: {"headers": ETAG_HEADER}, 403: QUOTA, 409: NAME_TAKEN, 422: INVALID},
)
async def create_queue(
    body: QueueCreate,
    request: Request,
    session: SessionDep,
    principal: QueuesWrite,
    idem: IdempotencyDep,
) -> Response:
    """Create a queue and its routing policy. Counts against the plan's queue quota."""
    if (replay := await idem.replay()) is not None:
        return replay
    queue = await service.create(session, principal.scope, body, principal.tenant.plan)
    audit(request, "queue.create", "queue", queue.id, name=queue.name)
    return await idem.respond(201, service.to_read(queue), headers={"ETag": etag(queue.version)})


@router.get("", response_model=Page[QueueRead])
async def list_queues(
    session: SessionDep,
    principal: QueuesRead,
    page: Annotated[PageParams, Depends(page_params)],
) -> Page[QueueRead]:
    rows = await repository.list_page(session, principal.scope, page.limit, page.after_id)
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    return Page(
        items=[service.to_read(r) for r in rows],
        next_cursor=encode_cursor(rows[-1].id) if more else None,
    )


@router.get(
    "/{queue_id}",
    response_model=QueueRead,
    responses={200: {"headers": ETAG_HEADER}, 404: NOT_FOUND},
)
async def get_queue(queue_id: uuid.UUID, session: SessionDep, principal: QueuesRead) -> Response:
    return _json(await service.get(session, principal.scope, queue_id))


@router.patch(
    "/{queue_id}",
    response_model=QueueRead,
    responses={
        200: {"headers": ETAG_HEADER},
        404: NOT_FOUND,
        409: NAME_TAKEN,
        412: STALE_IF_MATCH,
        422: INVALID,
    },
)
async def update_queue(
    queue_id: uuid.UUID,
    body: QueueUpdate,
    request: Request,
    session: SessionDep,
    principal: QueuesWrite,
    if_match: IfMatchDep,
) -> Response:
    """Change the fields given; lists are replaced whole, null clears a nullable field."""
    queue = await service.update(session, principal.scope, queue_id, body, if_match)
    audit(request, "queue.update", "queue", queue.id, fields=sorted(body.model_fields_set))
    return _json(queue)


@router.delete(
    "/{queue_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        404: NOT_FOUND,
        409: problem(
            409,
            "Another queue overflows to it, or a routing profile serves it",
            {
                "code": "queue-in-use",
                "detail": "Other queues or routing profiles use this queue; "
                "remove those references first.",
                "used_by": [
                    {
                        "type": "routing_profile",
                        "id": "019a2b7c-0000-7000-8000-0000000000d1",
                        "name": "Day shift",
                    }
                ],
            },
        ),
        412: STALE_IF_MATCH,
    },
)
async def delete_queue(
    queue_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    principal: QueuesWrite,
    if_match: IfMatchDep,
) -> Response:
    queue = await service.delete(session, principal.scope, queue_id, if_match)
    audit(request, "queue.delete", "queue", queue.id, name=queue.name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
