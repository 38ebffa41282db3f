"""Contact flows: an editable draft and immutable, numbered published versions.

Saving a draft checks only its shape (a draft may be half-built); publishing runs the
full validation against the tenant's queues, hours and skills and refuses with every
problem at once. A contact runs the version that was published when it arrived
(``published_graph``), so publishing never changes a contact already in a flow.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.channels import repository as channels_repo
from app.core.concurrency import IfMatch
from app.core.errors import Conflict, InvalidInput, NotFound
from app.db.base import utcnow
from app.db.integrity import guarded
from app.db.tenant import TenantScope
from app.flows import repository
from app.flows.graph import FlowGraph, GraphShapeError, Problem, dump_graph, parse_graph
from app.flows.models import Flow, FlowVersion
from app.flows.schemas import FlowCreate, FlowUpdate
from app.flows.validation import references, validate_graph

_EMPTY_DRAFT: dict[str, Any] = dump_graph(FlowGraph())


def _name_taken(name: str) -> Conflict:
    return Conflict(f"A flow named '{name}' exists.", code="flow-name-taken", field="body.name")


async def get(
    session: AsyncSession, scope: TenantScope, flow_id: uuid.UUID, *, for_update: bool = False
) -> Flow:
    flow = await repository.get(session, scope, flow_id, for_update=for_update)
    if flow is None:
        raise NotFound("No such flow.", code="flow-not-found")
    return flow


async def create(session: AsyncSession, scope: TenantScope, data: FlowCreate) -> Flow:
    if await repository.get_by_name(session, scope, data.name):
        raise _name_taken(data.name)
    flow = Flow(
        tenant_id=scope.tenant_id,
        name=data.name,
        description=data.description,
        channel=data.channel,
        draft=dump_graph(data.draft) if data.draft is not None else dict(_EMPTY_DRAFT),
    )

    async def insert() -> Flow:
        session.add(flow)
        await session.flush()
        return flow

    return await guarded(session, insert, {"ix_flows_tenant_id_name": _name_taken(data.name)})


async def update(
    session: AsyncSession,
    scope: TenantScope,
    flow_id: uuid.UUID,
    data: FlowUpdate,
    if_match: IfMatch,
) -> tuple[Flow, list[str]]:
    """The flow and the names of the fields that changed (none: same version)."""
    flow = await get(session, scope, flow_id, for_update=True)
    if_match.check(flow.version)
    changes: dict[str, Any] = {}
    given = data.model_fields_set
    if data.name is not None and data.name != flow.name:
        if data.name.lower() != flow.name.lower():
            other = await repository.get_by_name(session, scope, data.name)
            if other is not None and other.id != flow.id:
                raise _name_taken(data.name)
        changes["name"] = data.name
    if "description" in given and data.description != flow.description:
        changes["description"] = data.description
    if data.draft is not None:
        draft = dump_graph(data.draft)
        if draft != flow.draft:
            changes["draft"] = draft
    if not changes:
        return flow, []  # nothing changed: same version, same ETag
    for k, v in changes.items():
        setattr(flow, k, v)
    flow.version += 1
    flow.updated_at = utcnow()

    async def flush() -> Flow:
        await session.flush()
        return flow

    taken = _name_taken(data.name or "")
    return await guarded(session, flush, {"ix_flows_tenant_id_name": taken}), sorted(changes)


async def delete(
    session: AsyncSession, scope: TenantScope, flow_id: uuid.UUID, if_match: IfMatch
) -> Flow:
    flow = await get(session, scope, flow_id, for_update=True)
    if_match.check(flow.version)
    channels = await channels_repo.routing_to_flow(session, scope, flow_id)
    if channels:
        raise Conflict(
            f"Channels route their conversations to this flow ({', '.join(channels)}); "
            "point them elsewhere first.",
            code="flow-in-use",
        )
    in_use = Conflict(
        "Phone numbers point at this flow; point them elsewhere first.", code="flow-in-use"
    )

    async def remove() -> Flow:
        await session.delete(flow)
        await session.flush()
        return flow

    return await guarded(session, remove, {"fk_phone_numbers_flow": in_use})


async def check(
    session: AsyncSession,
    scope: TenantScope,
    graph_data: dict[str, Any],
    channel: str,
    *,
    hold: bool = False,
) -> list[Problem]:
    """Every problem that would stop this graph from publishing for this tenant.
    ``hold`` keeps the referenced queues, hours and skills from being deleted until
    the transaction ends (publishing: see ``repository.existing``)."""
    try:
        graph = parse_graph(graph_data)
    except GraphShapeError as exc:  # stored by an older shape; not expected
        return exc.problems
    known = await repository.existing(session, scope, references(graph), hold=hold)
    return validate_graph(graph, known, channel=channel)


class FlowInvalid(InvalidInput):
    code = "flow-invalid"
    title = "The flow cannot be published"


async def publish(
    session: AsyncSession,
    scope: TenantScope,
    flow_id: uuid.UUID,
    if_match: IfMatch,
    published_by: uuid.UUID | None,
) -> tuple[FlowVersion, bool]:
    """Publish the draft as the next version; (version, created). A draft equal to the
    current published version publishes nothing and answers that version."""
    flow = await get(session, scope, flow_id, for_update=True)  # serializes publishers
    if_match.check(flow.version)
    # Re-checks every reference against the database (a draft save checks only shape).
    problems = await check(session, scope, flow.draft, flow.channel, hold=True)
    if problems:
        first = problems[0]
        raise FlowInvalid(
            f"The draft has {len(problems)} problem(s); first: {first.path}: {first.message}",
            field=f"draft.{first.path}",
            problems=[p.as_dict() for p in problems],
        )
    latest = await repository.latest_version(session, scope, flow.id)
    if (
        latest is not None
        and latest.number == flow.published_version
        and latest.graph == flow.draft
    ):
        return latest, False
    number = (latest.number if latest is not None else 0) + 1
    version = FlowVersion(
        tenant_id=scope.tenant_id,
        flow_id=flow.id,
        number=number,
        graph=dict(flow.draft),
        published_by=published_by,
    )
    session.add(version)
    flow.published_version = number
    flow.version += 1
    flow.updated_at = utcnow()
    await session.flush()
    return version, True


async def get_version(
    session: AsyncSession, scope: TenantScope, flow_id: uuid.UUID, number: int
) -> FlowVersion:
    await get(session, scope, flow_id)
    version = await repository.get_version(session, scope, flow_id, number)
    if version is None:
        raise NotFound(f"This flow has no version {number}.", code="flow-version-not-found")
    return version


async def list_versions(
    session: AsyncSession, scope: TenantScope, flow_id: uuid.UUID, limit: int, before: int | None
) -> list[FlowVersion]:
    await get(session, scope, flow_id)
    return await repository.list_versions(session, scope, flow_id, limit, before)


async def published_graph(
    session: AsyncSession, scope: TenantScope, flow_id: uuid.UUID
) -> tuple[int, FlowGraph]:
    """The version a new contact starts on, and its graph (for the channels: start the
    interpreter with it and record the number on the contact)."""
    flow = await get(session, scope, flow_id)
    if flow.published_version is None:
        raise Conflict("This flow has never been published.", code="flow-not-published")
    version = await get_version(session, scope, flow_id, flow.published_version)
    return version.number, parse_graph(version.graph)
