from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.responses import RedirectResponse
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.models import AuditEvent
from app.audit.service import audit
from app.auth.principal import Principal, require
from app.auth.schemas import TokenPair
from app.core.crypto import CipherDep
from app.core.openapi import example, problem
from app.db.engine import SessionDep
from app.db.tenant import TenantScope
from app.sso import service
from app.sso.models import SsoOidcConfig
from app.sso.schemas import SsoOidcConfigRead, SsoOidcConfigWrite

router = APIRouter()

SsoRead = Annotated[Principal, require("sso:read")]
SsoWrite = Annotated[Principal, require("sso:write")]
TenantSlug = Annotated[str, Path(min_length=1, max_length=63, pattern=r"^[a-z0-9-]+$")]

_PROBLEM = {
    "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
}
_PROVIDER_ERROR: dict[int | str, dict[str, Any]] = {
    502: problem(
        "The identity provider failed or answered wrongly",
        example(502, "sso-provider-error", "The identity provider did not answer."),
    )
}
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _read(config: SsoOidcConfig, request: Request, slug: str) -> SsoOidcConfigRead:
    settings = request.app.state.settings
    return SsoOidcConfigRead(
        issuer=config.issuer,
        client_id=config.client_id,
        client_secret_set=bool(config.client_secret_encrypted),
        allowed_domains=list(config.allowed_domains),
        default_role=config.default_role,
        enabled=config.enabled,
        redirect_uri=service.redirect_uri(settings, slug),
        login_url=service.login_url(settings, slug),
        created_at=config.created_at,
        updated_at=config.updated_at,
    )


# -- configuration ----------------------------------------------------------------------


@router.get("/v1/sso/oidc", response_model=SsoOidcConfigRead, tags=["sso"])
async def get_sso_oidc(
    request: Request, session: SessionDep, principal: SsoRead
) -> SsoOidcConfigRead:
    """The tenant's OpenID Connect provider (the client secret is never returned)."""
    config = await service.get_config(session, principal.scope)
    return _read(config, request, principal.tenant.slug)


@router.put(
    "/v1/sso/oidc",
    response_model=SsoOidcConfigRead,
    tags=["sso"],
    responses={201: {"description": "Configured for the first time", "model": SsoOidcConfigRead}},
)
async def put_sso_oidc(
    body: SsoOidcConfigWrite,
    request: Request,
    response: Response,
    session: SessionDep,
    principal: SsoWrite,
    cipher: CipherDep,
) -> SsoOidcConfigRead:
    """Configure single sign-on with the tenant's OpenID Connect provider.

    The issuer must use https (plain http only for a loopback address outside
    production). Users whose verified email is in ``allowed_domains`` can sign in; the
    first login creates the user with ``default_role``.
    """
    config, created, secret_changed = await service.configure(
        session,
        principal.scope,
        request.app.state.settings,
        cipher,
        body,
        actor_id=principal.user_id,
    )
    audit(
        request,
        "sso.configure",
        "sso_oidc_config",
        config.id,
        issuer=config.issuer,
        client_id=config.client_id,
        allowed_domains=list(config.allowed_domains),
        default_role=config.default_role,
        enabled=config.enabled,
        client_secret_changed=secret_changed,
    )
    if created:
        response.status_code = status.HTTP_201_CREATED
    return _read(config, request, principal.tenant.slug)


@router.delete("/v1/sso/oidc", status_code=status.HTTP_204_NO_CONTENT, tags=["sso"])
async def delete_sso_oidc(request: Request, session: SessionDep, principal: SsoWrite) -> Response:
    """Remove single sign-on. Users it created keep their accounts."""
    await service.remove_config(session, principal.scope)
    audit(request, "sso.delete", "sso_oidc_config", None)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -- login --------------------------------------------------------------------------------


@router.get(
    "/v1/auth/sso/{tenant_slug}/login",
    status_code=status.HTTP_302_FOUND,
    response_class=RedirectResponse,
    tags=["auth"],
    responses={
        302: {"description": "Redirect to the tenant's identity provider"},
        **_PROVIDER_ERROR,
    },
)
async def sso_login(tenant_slug: TenantSlug, request: Request, session: SessionDep) -> Response:
    """Start a single sign-on login: redirects to the tenant's identity provider.

    404 when the tenant is unknown or has no enabled single sign-on.
    """
    st = request.app.state
    start = await service.start_login(session, st.session_factory, st.settings, tenant_slug)
    response = RedirectResponse(start.authorization_url, status_code=302, headers=_NO_STORE)
    response.set_cookie(
        start.cookie_name,
        start.cookie_value,
        max_age=start.max_age,
        path=start.cookie_path,
        secure=st.settings.public_url.startswith("https://"),
        httponly=True,
        samesite="lax",  # sent on the provider's top-level redirect back to us
    )
    return response


@router.get(
    "/v1/auth/sso/{tenant_slug}/callback",
    response_model=TokenPair,
    tags=["auth"],
    responses={
        403: problem(
            "The email is unverified or not allowed, the user is disabled, "
            "or a new agent would pass the plan's agents quota (quota-exceeded)",
            example(
                403,
                "sso-email-unverified",
                "The identity provider has not verified this email address.",
            ),
            example(
                403,
                "sso-email-domain-not-allowed",
                "This email's domain may not sign in to this tenant.",
            ),
        ),
        **_PROVIDER_ERROR,
    },
)
async def sso_callback(
    tenant_slug: TenantSlug,
    request: Request,
    response: Response,
    session: SessionDep,
    cipher: CipherDep,
    code: Annotated[str | None, Query(max_length=4096)] = None,
    state: Annotated[str | None, Query(max_length=512)] = None,
    error: Annotated[str | None, Query(max_length=256)] = None,
    iss: Annotated[str | None, Query(max_length=2048)] = None,
) -> TokenPair:
    """Where the identity provider sends the browser back: the same token pair as
    POST /v1/auth/token.

    400 ``sso-state-invalid`` for an unknown, expired, reused or foreign state; 401 for
    an ID token that fails verification; 403 for an unverified or disallowed email, or
    ``quota-exceeded`` when a first login would make an agent past the plan's agents; 409
    when the email belongs to another tenant; 502 when the provider fails.

    An invited agent signing in here has accepted the invitation (becomes active). A
    first login with ``default_role`` agent makes an active agent (GET /v1/agents).
    """
    st = request.app.state
    cookie_name = service.binding_cookie_name(state) if state else None
    login = await service.finish_login(
        session,
        st.session_factory,
        st.signing_keys,
        st.settings,
        cipher,
        slug=tenant_slug,
        state=state,
        code=code,
        error=error,
        iss=iss,
        binding=request.cookies.get(cookie_name) if cookie_name else None,
    )
    user = login.user
    if login.provisioned:
        await _audit_now(
            session,
            request,
            login.scope,
            "user.provision_sso",
            user.id,
            user.id,
            email=user.email,
            role=user.role,
            issuer=login.issuer,
        )
    await _audit_now(
        session,
        request,
        login.scope,
        "auth.sso_login",
        user.id,
        user.id,
        method="oidc",
        issuer=login.issuer,
        subject=login.subject,
    )
    response.headers.update(_NO_STORE)
    if cookie_name:
        response.delete_cookie(cookie_name, path=service.callback_path(tenant_slug))
    return TokenPair(
        access_token=login.tokens.access_token,
        refresh_token=login.tokens.refresh_token,
        expires_in=login.tokens.expires_in,
    )


async def _audit_now(
    session: AsyncSession,
    request: Request,
    scope: TenantScope,
    action: str,
    user_id: uuid.UUID,
    actor_id: uuid.UUID,
    **details: Any,
) -> None:
    """Write an audit event now, in the request's transaction. app.audit.service records
    only mutating methods, but this GET logs a user in and may create one."""
    session.add(
        AuditEvent(
            tenant_id=scope.tenant_id,
            actor_type="user",
            actor_id=actor_id,
            action=action,
            target_type="user",
            target_id=str(user_id),
            request_id=getattr(request.state, "request_id", None),
            client_address=request.client.host if request.client else None,
            details={k: v for k, v in details.items() if v is not None},
        )
    )
    await session.flush()
