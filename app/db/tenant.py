"""The tenant scope: a type only the auth layer (and platform services) create.

Repositories accept a ``TenantScope`` and nothing else; there is no "all tenants" value.
PostgreSQL row-level security stands behind it: ``bind_tenant`` sets
``app.tenant_id`` for the current transaction only.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

_MINT = object()


@dataclass(frozen=True, slots=True)
class TenantScope:
    tenant_id: uuid.UUID

    def __init__(self, tenant_id: uuid.UUID, _token: object = None) -> None:
        if _token is not _MINT:
            raise TypeError("TenantScope is created by the auth layer (mint_scope), not directly")
        object.__setattr__(self, "tenant_id", tenant_id)


def mint_scope(tenant_id: uuid.UUID) -> TenantScope:
    """Create a scope. Call sites: auth dependencies, signup, platform services, tests."""
    if not isinstance(tenant_id, uuid.UUID):
        raise TypeError("tenant_id must be a UUID")
    return TenantScope(tenant_id, _MINT)


async def bind_tenant(session: AsyncSession, scope: TenantScope) -> None:
    """Set the tenant for the rest of this transaction (SET LOCAL semantics)."""
    await session.execute(
        text("SELECT set_config('app.tenant_id', :tid, true)"), {"tid": str(scope.tenant_id)}
    )
    session.info["tenant_scope"] = scope
