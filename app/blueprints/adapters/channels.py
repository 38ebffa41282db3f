"""Channels in blueprints. Server-made values (widget keys, webhook secrets, inbound
addresses) are not part of a blueprint; credentials are write-only: used when a channel
is created, never read back or compared."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter, ValidationError

from app.blueprints.adapters.common import require_mapping
from app.blueprints.adapters.generic import blueprint_field, no_if_match, to_ids, to_names
from app.blueprints.engine import Adapter, Context
from app.channels import repository, service
from app.channels.schemas import ChannelConfigUpdate, ChannelCreate, ChannelUpdate
from app.core.crypto import load_cipher
from app.core.errors import InvalidInput, SwitchboardError

# The blueprint's config keys per channel type (what the tenant chooses).
CONFIG_KEYS: dict[str, tuple[str, ...]] = {
    "voice": ("phone_numbers",),
    "webchat": ("allowed_origins", "greeting", "theme", "queue", "flow"),
    "email": ("local_part", "reply_from", "display_name", "queue", "flow"),
    "sms": ("provider", "provider_account_id", "phone_numbers", "queue", "flow"),
    "whatsapp": ("provider", "provider_account_id", "templates", "queue", "flow"),
    "wechat": ("provider", "provider_account_id", "queue", "flow"),
    "messenger": ("provider", "provider_account_id", "queue", "flow"),
}
_CREATE: TypeAdapter[Any] = TypeAdapter(ChannelCreate)


class ChannelsAdapter(Adapter):
    kind = "channels"

    async def _all(self, ctx: Context) -> list[Any]:
        out: list[Any] = []
        after = None
        while True:
            rows = await repository.list_page(ctx.session, ctx.scope, 200, after)
            out += rows[:200]
            if len(rows) <= 200:
                return out
            after = rows[199].id

    def _item(
        self, ctx: Context, type_: str, name: str, enabled: bool, config: dict[str, Any]
    ) -> dict[str, Any]:
        named = to_names(config, ctx)
        if isinstance(named.get("phone_numbers"), list):
            named["phone_numbers"] = sorted(named["phone_numbers"])
        return {
            "name": name,
            "type": type_,
            "enabled": enabled,
            "config": {k: named.get(k) for k in CONFIG_KEYS[type_]},
        }

    inbound_domain = ""

    async def live(self, ctx: Context) -> list[dict[str, Any]]:
        self.inbound_domain = ctx.settings.inbound_email_domain
        channels = await self._all(ctx)
        numbers = await repository.numbers_of(ctx.session, ctx.scope, [c.id for c in channels])
        out = []
        for c in channels:
            ctx.remember("channels", c.name, c.id)
            config = dict(c.config) | {"phone_number_ids": [str(n) for n in numbers[c.id]]}
            if c.type == "email" and config.get("reply_from") == config.get("address"):
                config["reply_from"] = None  # the default: say nothing, as a blueprint would
            out.append(self._item(ctx, c.type, c.name, c.enabled, config))
        return out

    def _parse(self, ctx: Context, item: dict[str, Any], where: str, strict: bool) -> Any:
        raw = require_mapping(item, where)
        body = to_ids(dict(raw), ctx, where, strict)
        try:
            return _CREATE.validate_python(body)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = [str(p) for p in err.get("loc", ())]
            if loc and loc[0] in CONFIG_KEYS:  # the union's branch name
                loc = loc[1:]
            field = ".".join([where, *loc]).replace("phone_number_ids", "phone_numbers")
            raise InvalidInput(f"{field}: {err.get('msg', 'invalid')}", field=field) from None

    def normalize(self, ctx: Context, item: dict[str, Any], where: str) -> dict[str, Any]:
        data = self._parse(ctx, item, where, strict=False)
        config = data.config.model_dump(mode="json")
        return self._item(ctx, data.type, data.name, data.enabled, config)

    async def _call(self, where: str, fn: Any) -> Any:
        try:
            return await fn()
        except SwitchboardError as exc:
            exc.field = blueprint_field(exc.field, where).replace(
                "phone_number_ids", "phone_numbers"
            )
            raise

    async def create(self, ctx: Context, item: dict[str, Any], where: str) -> None:
        data = self._parse(ctx, item, where, strict=True)
        await self._call(
            where,
            lambda: service.create(
                ctx.session,
                ctx.scope,
                data,
                plan=ctx.plan,
                cipher=load_cipher(ctx.settings),
                inbound_email_domain=ctx.settings.inbound_email_domain,
            ),
        )

    async def update(self, ctx: Context, name: str, item: dict[str, Any], where: str) -> None:
        channel = await repository.get_by_name(ctx.session, ctx.scope, name)
        assert channel is not None
        if channel.type != item["type"]:
            raise InvalidInput(
                "a channel's type cannot change; give it a new name", field=f"{where}.type"
            )
        config = to_ids(dict(item["config"]), ctx, f"{where}.config", strict=True)
        settable = set(ChannelConfigUpdate.model_fields)
        if item["type"] == "email":
            config.pop("local_part", None)  # the inbound address is fixed once made
        change = ChannelUpdate(
            name=item["name"],
            enabled=item["enabled"],
            config=ChannelConfigUpdate(**{k: v for k, v in config.items() if k in settable}),
        )
        await self._call(
            where,
            lambda: service.update(
                ctx.session,
                ctx.scope,
                channel.id,
                change,
                no_if_match(),
                cipher=load_cipher(ctx.settings),
            ),
        )

    async def delete(self, ctx: Context, name: str) -> None:
        channel = await repository.get_by_name(ctx.session, ctx.scope, name)
        if channel is not None:
            await service.delete(ctx.session, ctx.scope, channel.id, no_if_match())

    def comparable(self, item: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in item.items() if k != "credentials"}
        config = dict(out.get("config") or {})
        if out.get("type") == "email" and not config.get("reply_from"):
            # The service replies from the inbound address unless told otherwise.
            config["reply_from"] = f"{config.get('local_part')}@{self.inbound_domain}"
        out["config"] = config
        return out
