from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel

from app.auth.principal import Principal, require
from app.db.engine import SessionDep
from app.quotas import service
from app.quotas.plans import plan_for

router = APIRouter(prefix="/v1/quotas", tags=["quotas"])


class QuotaRead(BaseModel):
    resource: str
    limit: int | None
    used: int


class QuotasRead(BaseModel):
    plan: str
    quotas: list[QuotaRead]


@router.get("", response_model=QuotasRead)
async def get_quotas(
    session: SessionDep, principal: Annotated[Principal, require("tenant:read")]
) -> QuotasRead:
    """The plan's limits and the current use of each, for this tenant."""
    plan = plan_for(principal.tenant.plan)
    report = await service.usage_report(session, principal.scope, plan.name)
    return QuotasRead(plan=plan.name, quotas=[QuotaRead(**r.__dict__) for r in report])
