"""Password login, token issue and rotation, e-mail verification."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.auth import jwt_keys, passwords, secrets, throttle
from app.auth.models import EmailVerification, RefreshToken
from app.auth.principal import check_tenant_status
from app.config import Settings
from app.core.errors import InvalidInput, Unauthorized
from app.db.base import utcnow, uuid7
from app.db.tenant import TenantScope, bind_tenant, mint_scope
from app.tenants import repository as tenant_repo
from app.users import repository as user_repo
from app.users.models import User


@dataclass(frozen=True)
class IssuedTokens:
    access_token: str
    refresh_token: str
    expires_in: int
    user: User


def _access_token(keys: jwt_keys.SigningKeys, settings: Settings, user: User) -> str:
    now = int(utcnow().timestamp())
    return jwt_keys.encode(
        keys,
        {
            "iss": settings.jwt_issuer,
            "sub": str(user.id),
            "tid": str(user.tenant_id),
            "role": user.role,
            "typ": "access",
            "iat": now,
            "exp": now + settings.access_token_ttl_seconds,
            "jti": uuid.uuid4().hex,
        },
    )


async def issue_tokens(
    session: AsyncSession,
    keys: jwt_keys.SigningKeys,
    settings: Settings,
    user: User,
    family_id: uuid.UUID | None = None,
) -> IssuedTokens:
    """A new access token and the next refresh token of ``family_id`` (or a new family)."""
    token_id = uuid7()
    credential, secret_hash = secrets.issue("sbr", user.tenant_id, token_id)
    session.add(
        RefreshToken(
            tenant_id=user.tenant_id,
            id=token_id,
            user_id=user.id,
            family_id=family_id or uuid7(),
            secret_hash=secret_hash,
            expires_at=utcnow() + timedelta(seconds=settings.refresh_token_ttl_seconds),
        )
    )
    await session.flush()
    return IssuedTokens(
        _access_token(keys, settings, user), credential, settings.access_token_ttl_seconds, user
    )


async def login_with_password(
    session: AsyncSession,
    keys: jwt_keys.SigningKeys,
    settings: Settings,
    *,
    email: str,
    password: str,
    address: str,
) -> IssuedTokens:
    account = email.lower()
    await throttle.check(session, settings, account, address)
    login = await user_repo.find_login(session, account)
    user: User | None = None
    if login is not None:
        await bind_tenant(session, mint_scope(login.tenant_id))
        user = await user_repo.get(session, mint_scope(login.tenant_id), login.user_id)
    ok = await passwords.verify_password_async(user.password_hash if user else None, password)
    if not ok or user is None or user.status != "active":
        await throttle.record_failure(session, settings, account, address)
        raise Unauthorized(
            "The email or password is wrong.", code="invalid-credentials", keep_changes=True
        )
    tenant = await tenant_repo.get(session, user.tenant_id)
    assert tenant is not None
    check_tenant_status(tenant)
    await throttle.clear_account(session, account)
    if user.password_hash and passwords.needs_rehash(user.password_hash):
        user.password_hash = await passwords.hash_password_async(password)
    user.last_login_at = utcnow()
    return await issue_tokens(session, keys, settings, user)


async def revoke_family(session: AsyncSession, scope: TenantScope, family_id: uuid.UUID) -> None:
    await session.execute(
        update(RefreshToken)
        .where(
            col(RefreshToken.tenant_id) == scope.tenant_id,
            col(RefreshToken.family_id) == family_id,
            col(RefreshToken.revoked_at).is_(None),
        )
        .values(revoked_at=utcnow())
    )


async def _load_refresh(session: AsyncSession, credential: str) -> tuple[TenantScope, RefreshToken]:
    parsed = secrets.parse(credential, "sbr")
    invalid = Unauthorized("The refresh token is invalid or expired.", code="invalid-refresh-token")
    if parsed is None:
        raise invalid
    scope = mint_scope(parsed.tenant_id)
    await bind_tenant(session, scope)
    stmt = (
        select(RefreshToken)
        .where(RefreshToken.tenant_id == scope.tenant_id, RefreshToken.id == parsed.record_id)
        .with_for_update()
    )
    token = (await session.execute(stmt)).scalar_one_or_none()
    if token is None or not secrets.secret_matches(parsed.secret, token.secret_hash):
        raise invalid
    return scope, token


async def refresh(
    session: AsyncSession,
    keys: jwt_keys.SigningKeys,
    settings: Settings,
    credential: str,
) -> IssuedTokens:
    scope, token = await _load_refresh(session, credential)
    if token.spent_at is not None and token.revoked_at is None:
        # A spent token presented again: it was stolen or replayed. Revoke the family.
        await revoke_family(session, scope, token.family_id)
        raise Unauthorized(
            "This refresh token was already used; its session is revoked.",
            code="refresh-token-reused",
            keep_changes=True,
        )
    if token.revoked_at is not None or token.spent_at is not None or token.expires_at <= utcnow():
        raise Unauthorized("The refresh token is invalid or expired.", code="invalid-refresh-token")
    user = await user_repo.get(session, scope, token.user_id)
    tenant = await tenant_repo.get(session, scope.tenant_id)
    if user is None or tenant is None or user.status != "active":
        raise Unauthorized("The refresh token is invalid or expired.", code="invalid-refresh-token")
    check_tenant_status(tenant)
    token.spent_at = utcnow()
    return await issue_tokens(session, keys, settings, user, family_id=token.family_id)


async def logout(session: AsyncSession, credential: str) -> uuid.UUID:
    """Revoke the refresh token's whole family (this device's session)."""
    scope, token = await _load_refresh(session, credential)
    await session.execute(
        update(RefreshToken)
        .where(
            RefreshToken.tenant_id == scope.tenant_id,  # type: ignore[arg-type]
            RefreshToken.family_id == token.family_id,  # type: ignore[arg-type]
            col(RefreshToken.revoked_at).is_(None),
        )  # type: ignore[union-attr]
        .values(revoked_at=utcnow())
    )
    return token.user_id


async def create_email_verification(
    session: AsyncSession, scope: TenantScope, user: User, ttl: timedelta = timedelta(days=3)
) -> str:
    vid = uuid7()
    credential, secret_hash = secrets.issue("sbv", scope.tenant_id, vid)
    session.add(
        EmailVerification(
            tenant_id=scope.tenant_id,
            id=vid,
            user_id=user.id,
            secret_hash=secret_hash,
            expires_at=utcnow() + ttl,
        )
    )
    await session.flush()
    return credential


async def verify_email(session: AsyncSession, credential: str) -> User:
    invalid = InvalidInput(
        "The verification token is invalid or expired.",
        code="invalid-verification-token",
        field="body.token",
    )
    parsed = secrets.parse(credential, "sbv")
    if parsed is None:
        raise invalid
    scope = mint_scope(parsed.tenant_id)
    await bind_tenant(session, scope)
    stmt = (
        select(EmailVerification)
        .where(
            EmailVerification.tenant_id == scope.tenant_id, EmailVerification.id == parsed.record_id
        )
        .with_for_update()
    )
    row = (await session.execute(stmt)).scalar_one_or_none()
    if (
        row is None
        or not secrets.secret_matches(parsed.secret, row.secret_hash)
        or row.used_at is not None
        or row.expires_at <= utcnow()
    ):
        raise invalid
    user = await user_repo.get(session, scope, row.user_id)
    if user is None:
        raise invalid
    row.used_at = utcnow()
    if user.email_verified_at is None:
        user.email_verified_at = utcnow()
    return user
