from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status

from app.api_keys import repository, service
from app.api_keys.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyRead
from app.audit.service import audit
from app.auth.principal import Principal, require
from app.core.pagination import Page, PageParams, page_of, page_params
from app.db.engine import SessionDep

router = APIRouter(prefix="/v1/api-keys", tags=["api-keys"])

ApiKeysRead = Annotated[Principal, require("api_keys:read")]
ApiKeysWrite = Annotated[Principal, require("api_keys:write")]


def _read(key: object) -> ApiKeyRead:
    return ApiKeyRead.model_validate(key, from_attributes=True)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ApiKeyCreated)
async def create_api_key(
    body: ApiKeyCreate, request: Request, session: SessionDep, principal: ApiKeysWrite
) -> ApiKeyCreated:
    key, credential = await service.create(
        session,
        principal.scope,
        name=body.name,
        role=principal.role,
        held_scopes=principal.scopes,
        requested_scopes=body.scopes,
        created_by=principal.user_id,
        expires_at=body.expires_at,
    )
    audit(request, "api_key.create", "api_key", key.id, name=key.name, scopes=key.scopes)
    return ApiKeyCreated(api_key=_read(key), key=credential)


@router.get("", response_model=Page[ApiKeyRead])
async def list_api_keys(
    session: SessionDep, principal: ApiKeysRead, page: Annotated[PageParams, Depends(page_params)]
) -> Page[ApiKeyRead]:
    rows = await repository.list_page(session, principal.scope, page.limit, page.after_id)
    return page_of(rows, page.limit, _read)


@router.get("/{key_id}", response_model=ApiKeyRead)
async def get_api_key(key_id: uuid.UUID, session: SessionDep, principal: ApiKeysRead) -> ApiKeyRead:
    return _read(await service.get(session, principal.scope, key_id))


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_api_key(
    key_id: uuid.UUID, request: Request, session: SessionDep, principal: ApiKeysWrite
) -> Response:
    key = await service.revoke(session, principal.scope, key_id)
    audit(request, "api_key.revoke", "api_key", key.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
