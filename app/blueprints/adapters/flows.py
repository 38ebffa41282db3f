"""Contact flows in blueprints: the graph names queues, hours and skills by name, and
is published by default (so what the blueprint says is what new contacts run)."""

from __future__ import annotations

from typing import Any

from app.blueprints.adapters.common import parse, require_mapping
from app.blueprints.adapters.generic import blueprint_field, no_if_match, to_ids, to_names
from app.blueprints.adapters.provisioning import every
from app.blueprints.engine import Adapter, Context
from app.core.errors import InvalidInput, SwitchboardError
from app.flows import repository, service
from app.flows.graph import dump_graph
from app.flows.schemas import FlowCreate, FlowUpdate


class FlowsAdapter(Adapter):
    kind = "flows"

    async def live(self, ctx: Context) -> list[dict[str, Any]]:
        out = []
        for flow in await every(repository.list_page)(ctx):
            ctx.remember("flows", flow.name, flow.id)
            published = False
            if flow.published_version is not None:
                v = await service.get_version(
                    ctx.session, ctx.scope, flow.id, flow.published_version
                )
                published = v.graph == flow.draft
            out.append(
                {
                    "name": flow.name,
                    "description": flow.description,
                    "channel": flow.channel,
                    "graph": to_names(flow.draft, ctx),
                    "published": published,
                }
            )
        return out

    def _parse(self, ctx: Context, item: dict[str, Any], where: str, strict: bool) -> FlowCreate:
        raw = dict(require_mapping(item, where))
        published = raw.pop("published", True)
        if not isinstance(published, bool):
            raise InvalidInput("must be true or false", field=f"{where}.published")
        graph = raw.pop("graph", None)
        if graph is not None:
            raw["draft"] = to_ids(graph, ctx, f"{where}.graph", strict)
        return parse(FlowCreate, raw, where)

    def normalize(self, ctx: Context, item: dict[str, Any], where: str) -> dict[str, Any]:
        data = self._parse(ctx, item, where, strict=False)
        published = item.get("published", True)
        graph = dump_graph(data.draft) if data.draft is not None else None
        return {
            "name": data.name,
            "description": data.description,
            "channel": data.channel,
            "graph": to_names(graph, ctx) if graph is not None else None,
            "published": published,
        }

    async def _publish(self, ctx: Context, flow_id: Any, where: str) -> None:
        try:
            await service.publish(ctx.session, ctx.scope, flow_id, no_if_match(), None)
        except SwitchboardError as exc:
            exc.field = blueprint_field(exc.field, where).replace(".draft.", ".graph.")
            raise

    async def create(self, ctx: Context, item: dict[str, Any], where: str) -> None:
        data = self._parse(ctx, item, where, strict=True)
        flow = await service.create(ctx.session, ctx.scope, data)
        ctx.remember("flows", flow.name, flow.id)
        if item.get("published", True):
            await self._publish(ctx, flow.id, where)

    async def update(self, ctx: Context, name: str, item: dict[str, Any], where: str) -> None:
        flow = await repository.get_by_name(ctx.session, ctx.scope, name)
        assert flow is not None
        data = self._parse(ctx, item, where, strict=True)
        if data.channel != flow.channel:
            raise InvalidInput(
                "a flow's channel cannot change; give it a new name", field=f"{where}.channel"
            )
        change = FlowUpdate(name=data.name, description=data.description, draft=data.draft)
        await service.update(ctx.session, ctx.scope, flow.id, change, no_if_match())
        if item.get("published", True):
            await self._publish(ctx, flow.id, where)

    async def delete(self, ctx: Context, name: str) -> None:
        flow = await repository.get_by_name(ctx.session, ctx.scope, name)
        if flow is not None:
            await service.delete(ctx.session, ctx.scope, flow.id, no_if_match())
