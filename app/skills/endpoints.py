from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response, status

from app.audit.service import audit
from app.auth.principal import Principal, require
from app.core.concurrency import IfMatchDep, etag, with_etag
from app.core.openapi import PRECONDITION_FAILED, WITH_ETAG, example, name_taken, problem
from app.core.pagination import Page, PageParams, page_of, page_params
from app.db.engine import SessionDep
from app.idempotency.service import IdempotencyDep
from app.skills import repository, service
from app.skills.models import Skill
from app.skills.schemas import SkillCreate, SkillRead, SkillUpdate

router = APIRouter(prefix="/v1/skills", tags=["skills"])

SkillsRead = Annotated[Principal, require("skills:read")]
SkillsWrite = Annotated[Principal, require("skills:write")]

NAME_TAKEN = name_taken("skill-name-taken", "A skill named 'Spanish' exists.")


def _read(skill: Skill) -> SkillRead:
    return SkillRead.model_validate(skill, from_attributes=True)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=SkillRead,
    responses={201: WITH_ETAG, 409: NAME_TAKEN},
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
    return page_of(rows, page.limit, _read)


@router.get("/{skill_id}", response_model=SkillRead, responses={200: WITH_ETAG})
async def get_skill(skill_id: uuid.UUID, session: SessionDep, principal: SkillsRead) -> Response:
    skill = await service.get(session, principal.scope, skill_id)
    return with_etag(_read(skill), skill.version)


@router.patch(
    "/{skill_id}",
    response_model=SkillRead,
    responses={
        200: WITH_ETAG,
        409: NAME_TAKEN,
        412: PRECONDITION_FAILED,
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
    return with_etag(_read(skill), skill.version)


@router.delete(
    "/{skill_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        409: problem(
            "Queues require the skill, agents hold it, or contact flows ask for it (in a "
            "draft or the published version)",
            example(
                409,
                "skill-in-use",
                "Queues, agents or contact flows use this skill; remove it from "
                "them first (a flow: change its draft and publish it).",
                used_by=[
                    {
                        "type": "queue",
                        "id": "019a2b7c-0000-7000-8000-0000000000a1",
                        "name": "Billing (EN)",
                    },
                    {
                        "type": "agent",
                        "id": "019a2b7c-0000-7000-8000-0000000000e1",
                        "name": "María López",
                    },
                    {
                        "type": "flow",
                        "id": "019a2b7c-0000-7000-8000-0000000000f1",
                        "name": "Main line",
                        "as": "draft",
                    },
                ],
            ),
        ),
        412: PRECONDITION_FAILED,
    },
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
