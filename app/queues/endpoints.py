from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status

from app.audit.service import audit
from app.auth.principal import Principal, require
from app.core.concurrency import IfMatchDep, etag, with_etag
from app.core.openapi import (
    PRECONDITION_FAILED,
    WITH_ETAG,
    example,
    name_taken,
    not_found,
    problem,
    scope_or_quota,
)
from app.core.pagination import Page, PageParams, page_of, page_params
from app.db.engine import SessionDep
from app.idempotency.service import IdempotencyDep
from app.queues import repository, service
from app.queues.models import Queue
from app.queues.schemas import QueueCreate, QueueRead, QueueUpdate

router = APIRouter(prefix="/v1/queues", tags=["queues"])

QueuesRead = Annotated[Principal, require("queues:read")]
QueuesWrite = Annotated[Principal, require("queues:write")]

NOT_FOUND = not_found("queue-not-found")
NAME_TAKEN = name_taken("queue-name-taken", "A queue named 'Billing (EN)' exists.")
INVALID = problem(
    "Validation failed: names the field and the reason",
    example(
        422,
        "validation-failed",
        "body.relaxation_steps.1.skill_id: is not one of the queue's required_skills",
        field="body.relaxation_steps.1.skill_id",
    ),
    example(
        422,
        "unknown-reference",
        "body.business_hours_id: no such business hours in this tenant",
        field="body.business_hours_id",
    ),
    example(
        422,
        "overflow-loop",
        "body.overflow_queue_id: that queue overflows back to this one (a loop)",
        field="body.overflow_queue_id",
    ),
)
QUOTA = scope_or_quota("queues:write", "queues", 5)


def _json(queue: Queue) -> Response:
    return with_etag(service.to_read(queue), queue.version)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=QueueRead,
    responses={201: WITH_ETAG, 403: QUOTA, 409: NAME_TAKEN, 422: INVALID},
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
    return page_of(rows, page.limit, service.to_read)


@router.get(
    "/{queue_id}",
    response_model=QueueRead,
    responses={200: WITH_ETAG, 404: NOT_FOUND},
)
async def get_queue(queue_id: uuid.UUID, session: SessionDep, principal: QueuesRead) -> Response:
    return _json(await service.get(session, principal.scope, queue_id))


@router.patch(
    "/{queue_id}",
    response_model=QueueRead,
    responses={
        200: WITH_ETAG,
        404: NOT_FOUND,
        409: NAME_TAKEN,
        412: PRECONDITION_FAILED,
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
            "Another queue overflows to it, a routing profile serves it, or a contact "
            "flow routes to it (in its draft or its published version)",
            example(
                409,
                "queue-in-use",
                "Other queues, routing profiles or contact flows use this queue; "
                "remove those references first (a flow: change its draft and publish it).",
                used_by=[
                    {
                        "type": "routing_profile",
                        "id": "019a2b7c-0000-7000-8000-0000000000d1",
                        "name": "Day shift",
                    },
                    {
                        "type": "flow",
                        "id": "019a2b7c-0000-7000-8000-0000000000f1",
                        "name": "Main line",
                        "as": "draft and published version 3",
                    },
                ],
            ),
        ),
        412: PRECONDITION_FAILED,
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
