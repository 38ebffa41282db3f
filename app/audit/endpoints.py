from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel
from sqlmodel import select

from app.audit.models import AuditEvent
from app.auth.principal import Principal, require
from app.core.pagination import Page, PageParams, encode_cursor, page_params
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
    stmt = select(AuditEvent).where(AuditEvent.tenant_id == principal.tenant_id)
    if action:
        stmt = stmt.where(AuditEvent.action == action)
    if page.after_id:
        stmt = stmt.where(AuditEvent.id < page.after_id)
    stmt = stmt.order_by(AuditEvent.id.desc()).limit(page.limit + 1)  # type: ignore[attr-defined]
    rows = list((await session.execute(stmt)).scalars())
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    return Page(
        items=[AuditEventRead.model_validate(r, from_attributes=True) for r in rows],
        next_cursor=encode_cursor(rows[-1].id) if more else None,
    )
