from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from app.api_keys import repository as api_key_repo
from app.audit.service import audit
from app.auth import service
from app.auth.principal import MePrincipal
from app.auth.schemas import (
    ApiKeyIdentity,
    Me,
    PasswordLogin,
    RefreshRequest,
    TenantRead,
    TokenPair,
    UserRead,
    VerifyEmailRequest,
)
from app.core.openapi import example, problem
from app.db.engine import SessionDep
from app.db.tenant import mint_scope
from app.users import repository as user_repo
from app.users.models import User

router = APIRouter(tags=["auth"])


def user_read(user: User) -> UserRead:
    return UserRead(
        id=user.id,
        email=user.email,
        display_name=user.display_name,
        role=user.role,
        status=user.status,
        email_verified=user.email_verified_at is not None,
    )


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.post(
    "/v1/auth/token",
    response_model=TokenPair,
    responses={
        429: problem(
            "Too many failed logins",
            example(
                429,
                "login-throttled",
                "Too many failed logins for this account; try again in 840 s.",
                retry_after=840,
            ),
        )
    },
)
async def create_token(body: PasswordLogin, request: Request, session: SessionDep) -> TokenPair:
    """Log in with email and password: a short-lived access token and a refresh token."""
    st = request.app.state
    issued = await service.login_with_password(
        session,
        st.signing_keys,
        st.settings,
        email=str(body.email),
        password=body.password,
        address=_address(request),
    )
    audit(
        request,
        "auth.login",
        "user",
        issued.user.id,
        scope=mint_scope(issued.user.tenant_id),
        actor_type="user",
        actor_id=issued.user.id,
        method="password",
    )
    return TokenPair(
        access_token=issued.access_token,
        refresh_token=issued.refresh_token,
        expires_in=issued.expires_in,
    )


@router.post("/v1/auth/refresh", response_model=TokenPair)
async def refresh_token(body: RefreshRequest, request: Request, session: SessionDep) -> TokenPair:
    """Spend a refresh token for a new pair. Presenting a spent one revokes its family."""
    st = request.app.state
    issued = await service.refresh(session, st.signing_keys, st.settings, body.refresh_token)
    audit(
        request,
        "auth.refresh",
        "user",
        issued.user.id,
        scope=mint_scope(issued.user.tenant_id),
        actor_type="user",
        actor_id=issued.user.id,
    )
    return TokenPair(
        access_token=issued.access_token,
        refresh_token=issued.refresh_token,
        expires_in=issued.expires_in,
    )


@router.post("/v1/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(body: RefreshRequest, request: Request, session: SessionDep) -> Response:
    """Revoke the session (refresh-token family) this refresh token belongs to."""
    user_id = await service.logout(session, body.refresh_token)
    scope = session.info["tenant_scope"]
    audit(request, "auth.logout", "user", user_id, scope=scope, actor_type="user", actor_id=user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/v1/auth/verify-email", response_model=UserRead)
async def verify_email(body: VerifyEmailRequest, request: Request, session: SessionDep) -> UserRead:
    user = await service.verify_email(session, body.token)
    audit(
        request,
        "user.verify_email",
        "user",
        user.id,
        scope=mint_scope(user.tenant_id),
        actor_type="user",
        actor_id=user.id,
    )
    return user_read(user)


@router.get("/v1/me", response_model=Me)
async def me(principal: MePrincipal, session: SessionDep) -> Me:
    t = principal.tenant
    user = (
        await user_repo.get(session, principal.scope, principal.user_id)
        if principal.user_id
        else None
    )
    key = None
    if principal.actor_type == "api_key":
        k = await api_key_repo.get(session, principal.scope, principal.actor_id)
        key = ApiKeyIdentity(id=k.id, name=k.name, prefix=k.prefix) if k else None
    return Me(
        tenant=TenantRead(id=t.id, name=t.name, slug=t.slug, status=t.status, plan=t.plan),
        user=user_read(user) if user and principal.actor_type == "user" else None,
        api_key=key,
        role=principal.role,
        scopes=sorted(principal.scopes),
    )


@router.get("/.well-known/jwks.json", include_in_schema=True, tags=["auth"])
async def jwks(request: Request) -> dict[str, object]:
    """Public keys that verify Switchboard access tokens (rotated by kid)."""
    return request.app.state.signing_keys.public_jwks()  # type: ignore[no-any-return]
