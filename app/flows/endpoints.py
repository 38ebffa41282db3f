from __future__ import annotations

import uuid
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from app.audit.service import audit
from app.auth.principal import Principal, require
from app.core.concurrency import IfMatchDep, etag, with_etag
from app.core.errors import InvalidInput
from app.core.openapi import (
    PRECONDITION_FAILED,
    WITH_ETAG,
    example,
    name_taken,
    not_found,
    problem,
)
from app.core.pagination import Page, PageParams, page_of, page_params
from app.db.engine import SessionDep
from app.flows import repository, service
from app.flows.graph import Problem, clean_error
from app.flows.models import Flow, FlowVersion
from app.flows.schemas import (
    FlowCreate,
    FlowRead,
    FlowSummary,
    FlowUpdate,
    FlowVersionRead,
    FlowVersionSummary,
    ValidationResult,
)
from app.idempotency.service import IdempotencyDep


class _FlowRoute(APIRoute):
    """Bad graph input names the field as the graph does (``body.draft.nodes.m1.prompt``),
    without the union tags pydantic puts in its locations (``...m1.menu.prompt``)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                errors = [_clean(dict(e)) for e in exc.errors()]
                raise RequestValidationError(errors, body=exc.body) from None

        return route_handler


def _clean(err: dict[str, Any]) -> dict[str, Any]:
    loc = tuple(err.get("loc", ()))
    return clean_error(err, prefix_len=2) if loc[:2] == ("body", "draft") else err


router = APIRouter(prefix="/v1/flows", tags=["flows"], route_class=_FlowRoute)

FlowsRead = Annotated[Principal, require("flows:read")]
FlowsWrite = Annotated[Principal, require("flows:write")]
FlowId = Annotated[uuid.UUID, Path(description="The flow's id")]
VersionNumber = Annotated[int, Path(ge=1, le=2**31 - 1, description="A published version")]

NOT_FOUND = not_found("flow-not-found")
NAME_TAKEN = name_taken("flow-name-taken", "A flow named 'Main line' exists.")
BAD_GRAPH = problem(
    "Validation failed: names the field and the reason",
    example(
        422,
        "validation-failed",
        "body.draft.nodes.menu1.options.12: must be a DTMF key (0-9, * or #) or a keyword "
        "starting with a letter",
        field="body.draft.nodes.menu1.options.12",
    ),
)
FLOW_INVALID = problem(
    "The draft cannot be published: every problem, each with its path",
    example(
        422,
        "flow-invalid",
        "The draft has 2 problem(s); first: nodes.menu1.options.3: there is no node 'sales'",
        field="draft.nodes.menu1.options.3",
        title="The flow cannot be published",
        problems=[
            {
                "path": "nodes.menu1.options.3",
                "code": "dangling-transition",
                "message": "there is no node 'sales'",
            },
            {
                "path": "nodes.hours.business_hours_id",
                "code": "unknown-business-hours",
                "message": "there are no such business hours",
            },
        ],
    ),
)


def _read(flow: Flow, problems: list[Problem]) -> dict[str, Any]:
    body = FlowSummary.model_validate(flow, from_attributes=True).model_dump(mode="json")
    body["draft"] = flow.draft  # the stored form: unset transitions left out
    body["problems"] = [p.as_dict() for p in problems]
    return body


async def _read_response(session: SessionDep, principal: Principal, flow: Flow) -> dict[str, Any]:
    problems = await service.check(session, principal.scope, flow.draft, flow.channel)
    return _read(flow, problems)


def _version(v: FlowVersion) -> dict[str, Any]:
    body = FlowVersionSummary.model_validate(v, from_attributes=True).model_dump(mode="json")
    body["flow_id"] = str(v.flow_id)
    body["graph"] = v.graph
    return body


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=FlowRead,
    responses={201: WITH_ETAG, 409: NAME_TAKEN, 422: BAD_GRAPH},
)
async def create_flow(
    body: FlowCreate,
    request: Request,
    session: SessionDep,
    principal: FlowsWrite,
    idem: IdempotencyDep,
) -> Response:
    """Create a flow, optionally with a first draft (which may be incomplete)."""
    if (replay := await idem.replay()) is not None:
        return replay
    flow = await service.create(session, principal.scope, body)
    audit(request, "flow.create", "flow", flow.id, name=flow.name, channel=flow.channel)
    read = await _read_response(session, principal, flow)
    return await idem.respond(201, read, headers={"ETag": etag(flow.version)})


@router.get("", response_model=Page[FlowSummary])
async def list_flows(
    session: SessionDep,
    principal: FlowsRead,
    page: Annotated[PageParams, Depends(page_params)],
) -> Page[FlowSummary]:
    """The tenant's flows, newest first (without their drafts: fetch one for that)."""
    rows = await repository.list_page(session, principal.scope, page.limit, page.after_id)
    return page_of(rows, page.limit, lambda r: FlowSummary.model_validate(r, from_attributes=True))


@router.get(
    "/{flow_id}",
    response_model=FlowRead,
    responses={200: WITH_ETAG, 404: NOT_FOUND},
)
async def get_flow(flow_id: FlowId, session: SessionDep, principal: FlowsRead) -> Response:
    """The flow with its draft, the draft's problems and the published version number."""
    flow = await service.get(session, principal.scope, flow_id)
    read = await _read_response(session, principal, flow)
    return with_etag(read, flow.version)


@router.patch(
    "/{flow_id}",
    response_model=FlowRead,
    responses={
        200: WITH_ETAG,
        404: NOT_FOUND,
        409: NAME_TAKEN,
        412: PRECONDITION_FAILED,
        422: BAD_GRAPH,
    },
)
async def update_flow(
    flow_id: FlowId,
    body: FlowUpdate,
    request: Request,
    session: SessionDep,
    principal: FlowsWrite,
    if_match: IfMatchDep,
) -> Response:
    """Rename, describe, or replace the draft. Published versions never change."""
    flow, changed = await service.update(session, principal.scope, flow_id, body, if_match)
    audit(request, "flow.update", "flow", flow.id, changed=changed)
    read = await _read_response(session, principal, flow)
    return with_etag(read, flow.version)


@router.delete(
    "/{flow_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        404: NOT_FOUND,
        409: problem(
            "Phone numbers point at the flow",
            example(
                409, "flow-in-use", "Phone numbers point at this flow; point them elsewhere first."
            ),
        ),
        412: PRECONDITION_FAILED,
    },
)
async def delete_flow(
    flow_id: FlowId,
    request: Request,
    session: SessionDep,
    principal: FlowsWrite,
    if_match: IfMatchDep,
) -> Response:
    """Delete the flow and its versions (refused while a phone number points at it)."""
    flow = await service.delete(session, principal.scope, flow_id, if_match)
    audit(request, "flow.delete", "flow", flow.id, name=flow.name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{flow_id}/validate",
    response_model=ValidationResult,
    responses={404: NOT_FOUND},
)
async def validate_flow(
    flow_id: FlowId,
    request: Request,
    session: SessionDep,
    principal: FlowsRead,
    idem: IdempotencyDep,
) -> Response:
    """Check the draft as publishing would: every problem, each with its path."""
    if (replay := await idem.replay()) is not None:
        return replay
    flow = await service.get(session, principal.scope, flow_id)
    problems = await service.check(session, principal.scope, flow.draft, flow.channel)
    audit(request, "flow.validate", "flow", flow.id, problems=len(problems))
    result = {"valid": not problems, "problems": [p.as_dict() for p in problems]}
    return await idem.respond(200, result)


@router.post(
    "/{flow_id}/publish",
    status_code=status.HTTP_201_CREATED,
    response_model=FlowVersionRead,
    responses={
        200: {
            "description": "The draft equals the published version: nothing new, that "
            "version answered",
            "model": FlowVersionRead,
        },
        201: {
            "description": "Published as a new version",
            "headers": {"Location": {"description": "The version", "schema": {"type": "string"}}},
        },
        404: NOT_FOUND,
        412: PRECONDITION_FAILED,
        422: FLOW_INVALID,
    },
)
async def publish_flow(
    flow_id: FlowId,
    request: Request,
    session: SessionDep,
    principal: FlowsWrite,
    if_match: IfMatchDep,
    idem: IdempotencyDep,
) -> Response:
    """Publish the draft as the next immutable version; new contacts run it, contacts
    already in the flow keep theirs. Refused with every problem if it is not valid."""
    if (replay := await idem.replay()) is not None:
        return replay
    version, created = await service.publish(
        session, principal.scope, flow_id, if_match, principal.user_id
    )
    audit(request, "flow.publish", "flow", flow_id, number=version.number, new=created)
    location = f"/v1/flows/{flow_id}/versions/{version.number}"
    return await idem.respond(
        201 if created else 200, _version(version), headers={"Location": location}
    )


def _version_cursor(after: uuid.UUID | None) -> int | None:
    # Version cursors carry the number in the shared cursor format (a UUID).
    if after is None:
        return None
    if not 1 <= after.int <= 2**31 - 1:
        raise InvalidInput("cursor is not one this API issued", field="query.cursor")
    return after.int


@router.get(
    "/{flow_id}/versions",
    response_model=Page[FlowVersionSummary],
    responses={404: NOT_FOUND},
)
async def list_flow_versions(
    flow_id: FlowId,
    session: SessionDep,
    principal: FlowsRead,
    page: Annotated[PageParams, Depends(page_params)],
) -> Page[FlowVersionSummary]:
    """Published versions, newest first (fetch one for its graph)."""
    before = _version_cursor(page.after_id)
    rows = await service.list_versions(session, principal.scope, flow_id, page.limit, before)
    return page_of(
        rows,
        page.limit,
        lambda v: FlowVersionSummary.model_validate(v, from_attributes=True),
        key=lambda v: uuid.UUID(int=v.number),
    )


@router.get(
    "/{flow_id}/versions/{number}",
    response_model=FlowVersionRead,
    responses={
        404: problem(
            "No such flow or version",
            example(404, "flow-version-not-found", "This flow has no version 7."),
        )
    },
)
async def get_flow_version(
    flow_id: FlowId, number: VersionNumber, session: SessionDep, principal: FlowsRead
) -> Response:
    """One published version, with the graph contacts on it run."""
    version = await service.get_version(session, principal.scope, flow_id, number)
    return JSONResponse(_version(version))
