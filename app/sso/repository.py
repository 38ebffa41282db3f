from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.db.tenant import TenantScope
from app.sso.models import SsoLoginState, SsoOidcConfig


async def get_config(
    session: AsyncSession, scope: TenantScope, *, for_update: bool = False
) -> SsoOidcConfig | None:
    stmt = select(SsoOidcConfig).where(SsoOidcConfig.tenant_id == scope.tenant_id)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def delete_config(session: AsyncSession, scope: TenantScope) -> bool:
    result = await session.execute(
        delete(SsoOidcConfig).where(col(SsoOidcConfig.tenant_id) == scope.tenant_id)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def add_state(session: AsyncSession, scope: TenantScope, state: SsoLoginState) -> None:
    assert state.tenant_id == scope.tenant_id
    session.add(state)
    await session.flush()


async def take_state(
    session: AsyncSession,
    scope: TenantScope,
    *,
    state_hash: str,
    browser_binding_hash: str,
    issuer: str,
    client_id: str,
    now: datetime,
) -> tuple[str, str, str] | None:
    """Delete the matching unexpired pending login and return its (nonce, code_verifier,
    redirect_uri): one atomic statement, so two callbacks cannot both spend it."""
    stmt = (
        delete(SsoLoginState)
        .where(
            col(SsoLoginState.tenant_id) == scope.tenant_id,
            col(SsoLoginState.state_hash) == state_hash,
            col(SsoLoginState.browser_binding_hash) == browser_binding_hash,
            col(SsoLoginState.issuer) == issuer,
            col(SsoLoginState.client_id) == client_id,
            col(SsoLoginState.expires_at) > now,
        )
        .returning(
            col(SsoLoginState.nonce),
            col(SsoLoginState.code_verifier),
            col(SsoLoginState.redirect_uri),
        )
    )
    row = (await session.execute(stmt)).first()
    return None if row is None else (row[0], row[1], row[2])


async def purge_states(
    session: AsyncSession, scope: TenantScope, *, expired_before: datetime | None = None
) -> None:
    """Delete the tenant's pending logins: all, or those expired before the time."""
    stmt = delete(SsoLoginState).where(col(SsoLoginState.tenant_id) == scope.tenant_id)
    if expired_before is not None:
        stmt = stmt.where(col(SsoLoginState.expires_at) < expired_before)
    await session.execute(stmt)
