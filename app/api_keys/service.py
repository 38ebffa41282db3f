"""API keys: visible prefix, hashed secret, scopes bounded by the creator, revocation."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.api_keys import repository
from app.api_keys.models import ApiKey
from app.auth import secrets
from app.auth.scopes import SCOPES
from app.core.errors import InvalidInput, NotFound
from app.db.base import utcnow, uuid7
from app.db.tenant import TenantScope


async def create(
    session: AsyncSession,
    scope: TenantScope,
    *,
    name: str,
    role: str,
    held_scopes: Iterable[str],
    requested_scopes: list[str] | None,
    created_by: uuid.UUID | None,
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    held = set(held_scopes)
    if requested_scopes is None:
        scopes = sorted(held)
    else:
        for i, s in enumerate(requested_scopes):
            if s not in SCOPES:
                raise InvalidInput(f"unknown scope '{s}'", field=f"body.scopes.{i}")
            if s not in held:
                raise InvalidInput(f"you do not hold the scope '{s}'", field=f"body.scopes.{i}")
        scopes = sorted(set(requested_scopes))
    if expires_at is not None and expires_at <= utcnow():
        raise InvalidInput("must be in the future", field="body.expires_at")
    key_id = uuid7()
    credential, secret_hash = secrets.issue("sbk", scope.tenant_id, key_id)
    key = ApiKey(
        tenant_id=scope.tenant_id,
        id=key_id,
        name=name,
        prefix=secrets.display_prefix(credential),
        secret_hash=secret_hash,
        scopes=scopes,
        role=role,
        created_by=created_by,
        expires_at=expires_at,
    )
    session.add(key)
    await session.flush()
    return key, credential


async def revoke(session: AsyncSession, scope: TenantScope, key_id: uuid.UUID) -> ApiKey:
    key = await repository.get(session, scope, key_id)
    if key is None:
        raise NotFound("No such API key.", code="api-key-not-found")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        await session.flush()
    return key


async def get(session: AsyncSession, scope: TenantScope, key_id: uuid.UUID) -> ApiKey:
    key = await repository.get(session, scope, key_id)
    if key is None:
        raise NotFound("No such API key.", code="api-key-not-found")
    return key
