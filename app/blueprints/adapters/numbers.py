"""Phone numbers in blueprints: claimed from the configured carrier, pointed at a flow."""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from typing import Any

from app.blueprints.adapters.common import parse, require_mapping
from app.blueprints.adapters.generic import blueprint_field, no_if_match
from app.blueprints.engine import Adapter, Context
from app.core.errors import InvalidInput, SwitchboardError
from app.phone_numbers import repository, service
from app.phone_numbers.carriers import Carriers
from app.phone_numbers.schemas import PhoneNumberClaim, PhoneNumberUpdate


def _carriers(ctx: Context) -> Carriers:
    taken = partial(repository.unavailable_among, ctx.session)
    return Carriers.from_settings(ctx.settings, taken=taken)


class NumbersAdapter(Adapter):
    kind = "phone_numbers"
    identity = "number"

    async def _active(self, ctx: Context) -> list[Any]:
        out: list[Any] = []
        after = None
        while True:
            rows = await repository.list_page(ctx.session, ctx.scope, 200, after, "active")
            out += rows[:200]
            if len(rows) <= 200:
                return out
            after = rows[199].id

    async def live(self, ctx: Context) -> list[dict[str, Any]]:
        out = []
        for n in await self._active(ctx):
            ctx.remember("phone_numbers", n.e164, n.id)
            out.append({"number": n.e164, "flow": ctx.name_of("flows", n.flow_id)})
        return out

    def normalize(self, ctx: Context, item: dict[str, Any], where: str) -> dict[str, Any]:
        raw = require_mapping(item, where)
        flow = raw.get("flow")
        data = parse(PhoneNumberClaim, {"number": raw.get("number")}, where)
        extra = sorted(set(raw) - {"number", "flow"})
        if extra:
            raise InvalidInput("unknown field", field=f"{where}.{extra[0]}")
        if flow is not None and not isinstance(flow, str):
            raise InvalidInput("must be a flow's name", field=f"{where}.flow")
        return {"number": data.number, "flow": flow}

    async def _call(self, where: str, fn: Any) -> Any:
        try:
            return await fn()
        except SwitchboardError as exc:
            exc.field = blueprint_field(exc.field, where)
            raise

    async def create(self, ctx: Context, item: dict[str, Any], where: str) -> None:
        flow_id = ctx.id_of("flows", item.get("flow"), f"{where}.flow")
        data = PhoneNumberClaim(number=item["number"], flow_id=flow_id)
        claimed = await self._call(
            where,
            lambda: service.claim(
                ctx.session, ctx.scope, plan=ctx.plan, carriers=_carriers(ctx), data=data
            ),
        )
        number = getattr(claimed, "number", claimed)
        ctx.remember("phone_numbers", number.e164, number.id)

    async def _find(self, ctx: Context, number: str) -> Any:
        return next((n for n in await self._active(ctx) if n.e164 == number), None)

    async def update(self, ctx: Context, name: str, item: dict[str, Any], where: str) -> None:
        n = await self._find(ctx, name)
        flow_id = ctx.id_of("flows", item.get("flow"), f"{where}.flow")
        await self._call(
            where,
            lambda: service.update(
                ctx.session, ctx.scope, n.id, PhoneNumberUpdate(flow_id=flow_id), no_if_match()
            ),
        )

    async def delete(self, ctx: Context, name: str) -> None:
        n = await self._find(ctx, name)
        if n is not None:
            await service.release(
                ctx.session,
                ctx.scope,
                n.id,
                no_if_match(),
                carriers=_carriers(ctx),
                cooldown=timedelta(days=ctx.settings.number_cooldown_days),
            )
