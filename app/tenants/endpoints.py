from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request, status

from app.audit.service import audit
from app.auth.endpoints import user_read
from app.auth.principal import Principal, require
from app.auth.schemas import TenantRead
from app.core.openapi import example, problem
from app.db.engine import SessionDep
from app.db.tenant import mint_scope
from app.tenants import service
from app.tenants.schemas import SignupRequest, SignupResponse

router = APIRouter(tags=["tenants"])

TenantReader = Annotated[Principal, require("tenant:read")]


@router.post(
    "/v1/signup",
    status_code=status.HTTP_201_CREATED,
    response_model=SignupResponse,
    responses={
        409: problem(
            "The email is taken",
            example(409, "email-taken", "An account with this email exists.", field="body.email"),
        )
    },
)
async def signup(body: SignupRequest, request: Request, session: SessionDep) -> SignupResponse:
    """Create a tenant (in trial), its owner and a first API key, in one transaction."""
    st = request.app.state
    result = await service.signup(
        session,
        st.settings,
        st.mail_sender,
        st.session_factory,
        company_name=body.company_name,
        email=str(body.email),
        password=body.password,
    )
    t = result.tenant
    audit(
        request,
        "tenant.signup",
        "tenant",
        t.id,
        scope=mint_scope(t.id),
        actor_type="user",
        actor_id=result.user.id,
    )
    return SignupResponse(
        tenant=TenantRead(id=t.id, name=t.name, slug=t.slug, status=t.status, plan=t.plan),
        user=user_read(result.user),
        api_key=result.api_key,
    )


@router.get("/v1/tenant", response_model=TenantRead)
async def get_tenant(principal: TenantReader) -> TenantRead:
    t = principal.tenant
    return TenantRead(id=t.id, name=t.name, slug=t.slug, status=t.status, plan=t.plan)
