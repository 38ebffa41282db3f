from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from app.audit.models import AuditEvent
from app.auth.principal import Principal, require
from app.core.pagination import Page, PageParams, page_of, page_params
from app.db import tenant_rows
from app.db.engine import SessionDep

router = APIRouter(prefix="/v1/audit-events", tags=["audit"])

AuditRead = Annotated[Principal, require("audit:read")]


class AuditEventRead(BaseModel):
    id: uuid.UUID
    occurred_at: datetime
    actor_type: str
    actor_id: uuid.UUID | None
    action: str
    target_type: str | None
    target_id: str | None
    request_id: str | None
    client_address: str | None
    details: dict[str, Any]


@router.get("", response_model=Page[AuditEventRead])
async def list_audit_events(
    session: SessionDep,
    principal: AuditRead,
    page: Annotated[PageParams, Depends(page_params)],
    action: Annotated[str | None, Query(max_length=100, pattern=r"^[^\x00-\x1f\x7f]*$")] = None,
) -> Page[AuditEventRead]:
    where = [AuditEvent.action == action] if action else []
    rows = await tenant_rows.list_page(
        session, AuditEvent, principal.scope, page.limit, page.after_id, *where
    )
    return page_of(
        rows, page.limit, lambda r: AuditEventRead.model_validate(r, from_attributes=True)
    )
