"""Platform-operator services on tenants (not reachable through the tenant API)."""

from __future__ import annotations

from sqlalchemy import update

from app.db.base import utcnow
from app.db.engine import create_engine, make_session_factory
from app.tenants.models import Tenant, TenantStatus


async def set_status(app_url: str, slug: str, status: TenantStatus, reason: str | None) -> bool:
    engine = create_engine(app_url, pool_size=1, max_overflow=0)
    try:
        async with make_session_factory(engine)() as session, session.begin():
            result = await session.execute(
                update(Tenant)
                .where(Tenant.slug == slug)  # type: ignore[arg-type]
                .values(status=status.value, status_reason=reason, updated_at=utcnow())
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]
    finally:
        await engine.dispose()
