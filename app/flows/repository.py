from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import ColumnClause, String, and_, case, cast, func, literal_column, or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.business_hours.models import BusinessHours
from app.db import tenant_rows
from app.db.tenant import TenantScope
from app.flows.models import Flow, FlowVersion
from app.flows.validation import KnownIds
from app.queues.models import Queue
from app.skills.models import Skill


async def get(
    session: AsyncSession, scope: TenantScope, flow_id: uuid.UUID, *, for_update: bool = False
) -> Flow | None:
    lock: tenant_rows.Lock | None = "update" if for_update else None
    return await tenant_rows.get(session, Flow, scope, flow_id, lock=lock)


async def get_by_name(session: AsyncSession, scope: TenantScope, name: str) -> Flow | None:
    return await tenant_rows.get_by_name(session, Flow, scope, name)


async def list_page(
    session: AsyncSession, scope: TenantScope, limit: int, after_id: uuid.UUID | None
) -> list[Flow]:
    return await tenant_rows.list_page(session, Flow, scope, limit, after_id)


async def latest_version(
    session: AsyncSession, scope: TenantScope, flow_id: uuid.UUID
) -> FlowVersion | None:
    stmt = (
        select(FlowVersion)
        .where(FlowVersion.tenant_id == scope.tenant_id, FlowVersion.flow_id == flow_id)
        .order_by(col(FlowVersion.number).desc())
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_version(
    session: AsyncSession, scope: TenantScope, flow_id: uuid.UUID, number: int
) -> FlowVersion | None:
    stmt = select(FlowVersion).where(
        FlowVersion.tenant_id == scope.tenant_id,
        FlowVersion.flow_id == flow_id,
        FlowVersion.number == number,
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_versions(
    session: AsyncSession,
    scope: TenantScope,
    flow_id: uuid.UUID,
    limit: int,
    before: int | None,
) -> list[FlowVersion]:
    """Newest first; ``limit + 1`` rows so the caller knows whether more follow."""
    stmt = select(FlowVersion).where(
        FlowVersion.tenant_id == scope.tenant_id, FlowVersion.flow_id == flow_id
    )
    if before is not None:
        stmt = stmt.where(col(FlowVersion.number) < before)
    stmt = stmt.order_by(col(FlowVersion.number).desc()).limit(limit + 1)
    return list((await session.execute(stmt)).scalars())


async def existing(
    session: AsyncSession, scope: TenantScope, named: KnownIds, *, hold: bool = False
) -> KnownIds:
    """Which of the named queue, business-hours and skill ids exist for this tenant.

    ``hold`` (publishing) locks the ones found FOR KEY SHARE until the transaction
    ends: no foreign key guards references inside a graph, so a concurrent delete of
    one of them (FOR UPDATE) waits for the publish and then sees the new version, or
    the publish waits for the delete and finds the reference gone.
    """

    async def present(
        model: type[Queue] | type[BusinessHours] | type[Skill], ids: frozenset[uuid.UUID]
    ) -> frozenset[uuid.UUID]:
        if not ids:
            return frozenset()
        stmt = select(model.id).where(model.tenant_id == scope.tenant_id, col(model.id).in_(ids))
        if hold:
            stmt = stmt.with_for_update(read=True, key_share=True)
        return frozenset((await session.execute(stmt)).scalars())

    return KnownIds(
        queues=await present(Queue, named.queues),
        business_hours=await present(BusinessHours, named.business_hours),
        skills=await present(Skill, named.skills),
    )


ReferenceKind = Literal["queue", "business_hours", "skill"]

# Where each kind of id sits in a stored graph (``app.flows.graph``, dumped as JSON:
# ids are lowercase strings). ``$id`` is passed as a variable, never spliced in.
_REFERENCE_PATHS: dict[str, str] = {
    "queue": '$.nodes.* ? ((@.type == "route_to_queue" || @.type == "offer_callback")'
    " && @.queue_id == $id)",
    "business_hours": '$.nodes.* ? (@.type == "check_hours" && @.business_hours_id == $id)',
    "skill": '$.nodes.* ? (@.type == "route_to_queue").extra_skills[*] ? (@.skill_id == $id)',
}


@dataclass(frozen=True)
class FlowReference:
    """A flow whose draft or current published version names a resource."""

    flow_id: uuid.UUID
    name: str
    in_draft: bool
    published_version: int | None  # the published version naming it, if it does

    def where(self) -> str:
        """Which graphs name it, for a person reading an in-use error."""
        parts = ["draft"] if self.in_draft else []
        if self.published_version is not None:
            parts.append(f"published version {self.published_version}")
        return " and ".join(parts)


async def flows_referencing(
    session: AsyncSession, scope: TenantScope, kind: ReferenceKind, id: uuid.UUID
) -> list[FlowReference]:
    """The tenant's flows whose draft, or whose currently published version, names the
    queue, business hours or skill ``id``, ordered by flow name. Older versions that are
    no longer published are left out: no new contact starts on them.

    A JSONB path search over the tenant's flows (no index: a tenant has few flows, and
    deleting a queue, hours or a skill is rare).
    """
    path: ColumnClause[Any] = literal_column(f"'{_REFERENCE_PATHS[kind]}'::jsonpath")
    variables = func.jsonb_build_object("id", cast(str(id), String))
    in_draft = func.jsonb_path_exists(col(Flow.draft), path, variables)
    in_published = func.jsonb_path_exists(col(FlowVersion.graph), path, variables)
    # The published version's number where it names the id; NULL otherwise (and when
    # the flow was never published: no version joins).
    published = case((in_published, col(FlowVersion.number)), else_=None)
    stmt = (
        select(col(Flow.id), col(Flow.name), in_draft, published)
        .outerjoin(
            FlowVersion,
            and_(
                col(FlowVersion.tenant_id) == col(Flow.tenant_id),
                col(FlowVersion.flow_id) == col(Flow.id),
                col(FlowVersion.number) == col(Flow.published_version),
            ),
        )
        .where(Flow.tenant_id == scope.tenant_id, or_(in_draft, in_published))
        .order_by(func.lower(col(Flow.name)), col(Flow.id))
    )
    return [
        FlowReference(flow_id, name, bool(draft), number)
        for flow_id, name, draft, number in await session.execute(stmt)
    ]
