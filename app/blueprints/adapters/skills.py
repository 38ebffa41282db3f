from __future__ import annotations

from typing import Any

from app.blueprints.adapters.common import parse, require_mapping
from app.blueprints.engine import Adapter, Context
from app.core.concurrency import IfMatch
from app.skills import repository, service
from app.skills.schemas import SkillCreate, SkillUpdate


class SkillsAdapter(Adapter):
    kind = "skills"

    async def live(self, ctx: Context) -> list[dict[str, Any]]:
        out = []
        after = None
        while True:
            rows = await repository.list_page(ctx.session, ctx.scope, 200, after)
            for s in rows[:200]:
                ctx.remember("skills", s.name, s.id)
                out.append({"name": s.name, "kind": s.kind, "description": s.description})
            if len(rows) <= 200:
                return out
            after = rows[199].id

    def normalize(self, ctx: Context, item: dict[str, Any], where: str) -> dict[str, Any]:
        data = parse(SkillCreate, require_mapping(item, where), where)
        return {"name": data.name, "kind": data.kind, "description": data.description}

    async def create(self, ctx: Context, item: dict[str, Any], where: str) -> None:
        skill = await service.create(ctx.session, ctx.scope, SkillCreate(**item))
        ctx.remember("skills", skill.name, skill.id)

    async def update(self, ctx: Context, name: str, item: dict[str, Any], where: str) -> None:
        skill = await repository.get_by_name(ctx.session, ctx.scope, name)
        assert skill is not None
        await service.update(ctx.session, ctx.scope, skill.id, SkillUpdate(**item), IfMatch(None))

    async def delete(self, ctx: Context, name: str) -> None:
        skill = await repository.get_by_name(ctx.session, ctx.scope, name)
        if skill is not None:
            await service.delete(ctx.session, ctx.scope, skill.id, IfMatch(None))
