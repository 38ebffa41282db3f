"""Who is calling: resolved from a bearer JWT or an API key, with the tenant bound."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, SecurityScopes
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection

from app.api_keys import repository as api_key_repo
from app.auth import jwt_keys, secrets
from app.auth.scopes import scopes_for
from app.core.errors import Forbidden, Unauthorized
from app.core.telemetry import tag_tenant
from app.db.base import utcnow
from app.db.engine import SessionDep
from app.db.tenant import TenantScope, bind_tenant, mint_scope
from app.tenants import repository as tenant_repo
from app.tenants.models import Tenant, TenantStatus
from app.users import repository as user_repo

bearer = HTTPBearer(auto_error=False, description="A JWT access token or an API key")

_LAST_USED_GRANULARITY = timedelta(seconds=60)


@dataclass(frozen=True)
class Principal:
    scope: TenantScope
    tenant: Tenant
    actor_type: str  # "user" | "api_key"
    actor_id: uuid.UUID
    user_id: uuid.UUID | None
    role: str
    scopes: frozenset[str]

    @property
    def tenant_id(self) -> uuid.UUID:
        return self.scope.tenant_id


def check_tenant_status(tenant: Tenant) -> None:
    if tenant.status == TenantStatus.suspended:
        raise Forbidden("This tenant is suspended.", code="tenant-suspended")
    if tenant.status == TenantStatus.closed:
        raise Forbidden("This tenant is closed.", code="tenant-closed")


async def _from_api_key(session: AsyncSession, token: str) -> Principal | None:
    parsed = secrets.parse(token, "sbk")
    if parsed is None:
        return None
    scope = mint_scope(parsed.tenant_id)
    await bind_tenant(session, scope)
    key = await api_key_repo.get(session, scope, parsed.record_id)
    now = utcnow()
    if key is None or not secrets.secret_matches(parsed.secret, key.secret_hash):
        return None
    if key.revoked_at is not None or (key.expires_at is not None and key.expires_at <= now):
        return None
    tenant = await tenant_repo.get(session, parsed.tenant_id)
    if tenant is None:
        return None
    if key.last_used_at is None or now - key.last_used_at > _LAST_USED_GRANULARITY:
        await api_key_repo.touch(session, scope, key.id, now)
    return Principal(
        scope,
        tenant,
        "api_key",
        key.id,
        key.created_by,
        key.role,
        frozenset(key.scopes) & scopes_for(key.role),
    )


async def principal_from_token(
    http: HTTPConnection, session: AsyncSession, token: str
) -> Principal | None:
    """The principal of a bearer token or API key (WebSockets authenticate with this);
    None when invalid. A suspended or closed tenant is refused (Forbidden)."""
    if token.startswith("sbk_"):
        principal = await _from_api_key(session, token)
    else:
        principal = await _from_jwt(http, session, token)
    if principal is not None:
        check_tenant_status(principal.tenant)
        tag_tenant(principal.tenant_id)
    return principal


async def _from_jwt(request: HTTPConnection, session: AsyncSession, token: str) -> Principal | None:
    keys: jwt_keys.SigningKeys = request.app.state.signing_keys
    claims = jwt_keys.decode(keys, token, request.app.state.settings.jwt_issuer)
    if claims is None or claims.get("typ") != "access":
        return None
    try:
        tenant_id, user_id = uuid.UUID(str(claims["tid"])), uuid.UUID(str(claims["sub"]))
    except ValueError:
        return None
    scope = mint_scope(tenant_id)
    await bind_tenant(session, scope)
    user = await user_repo.get(session, scope, user_id)
    tenant = await tenant_repo.get(session, tenant_id)
    if user is None or tenant is None or user.status != "active":
        return None
    return Principal(scope, tenant, "user", user.id, user.id, user.role, scopes_for(user.role))


async def authenticate(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("Send 'Authorization: Bearer <token or API key>'.")
    token = credentials.credentials
    if token.startswith("sbk_"):
        principal = await _from_api_key(session, token)
    else:
        principal = await _from_jwt(request, session, token)
    if principal is None:
        raise Unauthorized(
            "The token or API key is invalid, expired or revoked.", code="invalid-credentials"
        )
    check_tenant_status(principal.tenant)
    request.state.principal = principal
    tag_tenant(principal.tenant_id)
    return principal


def _require(
    security_scopes: SecurityScopes, principal: Annotated[Principal, Depends(authenticate)]
) -> Principal:
    missing = [s for s in security_scopes.scopes if s not in principal.scopes]
    if missing:
        raise Forbidden(
            f"This call needs the scope '{missing[0]}'.",
            code="insufficient-scope",
            required_scope=missing[0],
        )
    return principal


def require(scope: str) -> object:
    """Annotated metadata: ``Annotated[Principal, require("api_keys:write")]``."""
    return Security(_require, scopes=[scope])


MePrincipal = Annotated[Principal, require("me")]
