"""Audit trail: every mutating request writes one event in its own transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.models import AuditEvent
from app.db.tenant import TenantScope

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass
class PendingAudit:
    action: str
    target_type: str | None
    target_id: str | None
    details: dict[str, Any] = field(default_factory=dict)
    scope: TenantScope | None = None
    actor_type: str | None = None
    actor_id: uuid.UUID | None = None


def audit(
    request: Request,
    action: str,
    target_type: str | None = None,
    target_id: object | None = None,
    *,
    scope: TenantScope | None = None,
    actor_type: str | None = None,
    actor_id: uuid.UUID | None = None,
    **details: Any,
) -> None:
    """Name the action and target of this request; written when it commits."""
    request.state.audit = PendingAudit(
        action,
        target_type,
        None if target_id is None else str(target_id),
        {k: v for k, v in details.items() if v is not None},
        scope,
        actor_type,
        actor_id,
    )


async def flush_request_audit(session: AsyncSession, request: Request) -> None:
    if request.method not in MUTATING:
        return
    pending: PendingAudit | None = getattr(request.state, "audit", None)
    principal = getattr(request.state, "principal", None)
    if pending is None:
        if principal is None:
            return  # nothing changed on behalf of a tenant
        route = request.scope.get("route")
        pending = PendingAudit(
            f"{request.method} {getattr(route, 'path', request.url.path)}", None, None
        )
    scope = pending.scope or (principal.scope if principal else None)
    if scope is None:
        return
    actor_type = pending.actor_type or (principal.actor_type if principal else "system")
    actor_id = pending.actor_id or (principal.actor_id if principal else None)
    session.add(
        AuditEvent(
            tenant_id=scope.tenant_id,
            actor_type=actor_type,
            actor_id=actor_id,
            action=pending.action,
            target_type=pending.target_type,
            target_id=pending.target_id,
            request_id=getattr(request.state, "request_id", None),
            client_address=request.client.host if request.client else None,
            details=pending.details,
        )
    )
    await session.flush()
