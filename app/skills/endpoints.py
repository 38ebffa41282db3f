from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.responses import JSONResponse

from app.audit.service import audit
from app.auth.principal import Principal, require
from app.core.concurrency import IfMatchDep, etag
from app.core.pagination import Page, PageParams, encode_cursor, page_params
from app.db.engine import SessionDep
from app.idempotency.service import IdempotencyDep
from app.skills import repository, service
from app.skills.models import Skill
from app.skills.schemas import SkillCreate, SkillRead, SkillUpdate

router = APIRouter(prefix="/v1/skills", tags=["skills"])

SkillsRead = Annotated[Principal, require("skills:read")]
SkillsWrite = Annotated[Principal, require("skills:write")]

ETAG_HEADER = {"ETag": {"description": "The version, for If-Match", "schema": {"type": "string"}}}


def _read(skill: Skill) -> SkillRead:
    return SkillRead.model_validate(skill, from_attributes=True)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=SkillRead,
    responses={201: {"headers": ETAG_HEADER}, 409: {"description": "Name taken"}},
)
async def create_skill(
    body: SkillCreate,
    request: Request,
    session: SessionDep,
    principal: SkillsWrite,
    idem: IdempotencyDep,
) -> Response:
    if (replay := await idem.replay()) is not None:
        return replay
    skill = await service.create(session, principal.scope, body)
    audit(request, "skill.create", "skill", skill.id, name=skill.name)
    return await idem.respond(201, _read(skill), headers={"ETag": etag(skill.version)})


@router.get("", response_model=Page[SkillRead])
async def list_skills(
    session: SessionDep,
    principal: SkillsRead,
    page: Annotated[PageParams, Depends(page_params)],
    kind: Annotated[Literal["skill", "language"] | None, Query()] = None,
) -> Page[SkillRead]:
    rows = await repository.list_page(session, principal.scope, page.limit, page.after_id, kind)
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    return Page(
        items=[_read(r) for r in rows], next_cursor=encode_cursor(rows[-1].id) if more else None
    )


@router.get("/{skill_id}", response_model=SkillRead, responses={200: {"headers": ETAG_HEADER}})
async def get_skill(skill_id: uuid.UUID, session: SessionDep, principal: SkillsRead) -> Response:
    skill = await service.get(session, principal.scope, skill_id)
    return JSONResponse(_read(skill).model_dump(mode="json"), headers={"ETag": etag(skill.version)})


@router.patch(
    "/{skill_id}",
    response_model=SkillRead,
    responses={
        200: {"headers": ETAG_HEADER},
        409: {"description": "Name taken"},
        412: {"description": "Stale If-Match"},
    },
)
async def update_skill(
    skill_id: uuid.UUID,
    body: SkillUpdate,
    request: Request,
    session: SessionDep,
    principal: SkillsWrite,
    if_match: IfMatchDep,
) -> Response:
    skill = await service.update(session, principal.scope, skill_id, body, if_match)
    audit(request, "skill.update", "skill", skill.id, **body.model_dump(exclude_unset=True))
    return JSONResponse(_read(skill).model_dump(mode="json"), headers={"ETag": etag(skill.version)})


@router.delete(
    "/{skill_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={409: {"description": "In use"}, 412: {"description": "Stale If-Match"}},
)
async def delete_skill(
    skill_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    principal: SkillsWrite,
    if_match: IfMatchDep,
) -> Response:
    skill = await service.delete(session, principal.scope, skill_id, if_match)
    audit(request, "skill.delete", "skill", skill.id, name=skill.name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
