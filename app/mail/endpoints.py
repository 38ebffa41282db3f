from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from app.auth.principal import Principal, require
from app.core.errors import NotFound
from app.core.pagination import Page, PageParams, page_of, page_params
from app.db import tenant_rows
from app.db.engine import SessionDep
from app.mail.models import OutboundMail

router = APIRouter(prefix="/v1/dev/outbox", tags=["dev"])

MailRead = Annotated[Principal, require("mail:read")]


class OutboundMailRead(BaseModel):
    id: uuid.UUID
    kind: str
    to_address: str
    subject: str
    body_text: str
    created_at: datetime
    sent_at: datetime | None


@router.get(
    "",
    response_model=Page[OutboundMailRead],
    description="The development outbox: mail the embedded default does not send. "
    "Answers 404 when a real mail backend is configured.",
)
async def list_dev_outbox(
    request: Request,
    session: SessionDep,
    principal: MailRead,
    page: Annotated[PageParams, Depends(page_params)],
) -> Page[OutboundMailRead]:
    if request.app.state.settings.mail_backend != "dev":
        raise NotFound("There is no development outbox with a real mail backend.")
    rows = await tenant_rows.list_page(
        session,
        OutboundMail,
        principal.scope,
        page.limit,
        page.after_id,
        OutboundMail.backend == "dev",
    )
    return page_of(
        rows, page.limit, lambda r: OutboundMailRead.model_validate(r, from_attributes=True)
    )
