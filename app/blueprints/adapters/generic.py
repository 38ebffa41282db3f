"""A blueprint adapter over a domain's API schemas and service functions.

The normal form of an item is the domain's read model without id, version and times,
with every reference to another resource replaced by that resource's name:
``skill_id`` becomes ``skill``, ``overflow_queue_id`` becomes ``overflow_queue``,
``phone_number_ids`` becomes ``phone_numbers``. Desired items go through the domain's
Create schema, so defaults are filled exactly as the API fills them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel

from app.blueprints.adapters.common import parse, require_mapping
from app.blueprints.engine import Adapter, Context
from app.core.concurrency import IfMatch
from app.core.errors import InvalidInput, SwitchboardError

# id field -> (blueprint field, kind whose names it holds)
REFERENCES: dict[str, tuple[str, str]] = {
    "skill_id": ("skill", "skills"),
    "queue_id": ("queue", "queues"),
    "overflow_queue_id": ("overflow_queue", "queues"),
    "business_hours_id": ("business_hours", "business_hours"),
    "routing_profile_id": ("routing_profile", "routing_profiles"),
    "flow_id": ("flow", "flows"),
    "supervisor_id": ("supervisor", "users"),
    "phone_number_ids": ("phone_numbers", "phone_numbers"),
}
NAMES_TO_IDS = {name: (id_key, kind) for id_key, (name, kind) in REFERENCES.items()}
META = ("id", "version", "created_at", "updated_at")


def _synthetic(kind: str, name: str) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"switchboard-blueprint:{kind}:{name.lower()}")


def to_names(value: Any, ctx: Context) -> Any:
    if isinstance(value, list):
        return [to_names(v, ctx) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for k, v in value.items():
        if k in REFERENCES:
            name_key, kind = REFERENCES[k]
            if isinstance(v, list):
                out[name_key] = [ctx.name_of(kind, uuid.UUID(str(x))) for x in v]
            else:
                out[name_key] = ctx.name_of(kind, uuid.UUID(str(v))) if v else None
        else:
            out[k] = to_names(v, ctx)
    return out


def to_ids(value: Any, ctx: Context, where: str, strict: bool) -> Any:
    """Names back to ids. Not strict (planning): names not known yet get stand-in ids,
    so that items referring to things the same blueprint creates can be normalized."""
    if isinstance(value, list):
        return [to_ids(v, ctx, f"{where}.{i}", strict) for i, v in enumerate(value)]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for k, v in value.items():
        if k in NAMES_TO_IDS:
            id_key, kind = NAMES_TO_IDS[k]
            if isinstance(v, list):
                out[id_key] = [
                    _resolve(ctx, kind, x, f"{where}.{k}.{i}", strict) for i, x in enumerate(v)
                ]
            else:
                out[id_key] = _resolve(ctx, kind, v, f"{where}.{k}", strict)
        else:
            out[k] = to_ids(v, ctx, f"{where}.{k}", strict)
    return out


def _resolve(ctx: Context, kind: str, name: Any, where: str, strict: bool) -> str | None:
    if name is None:
        return None
    if not isinstance(name, str):
        raise InvalidInput("must be a name", field=where)
    known = ctx.ids.get(kind, {}).get(name.lower())
    if known is not None:
        return str(known)
    if strict:
        ctx.id_of(kind, name, where)  # raises blueprint-unknown-reference
    fake = _synthetic(kind, name)
    ctx.names.setdefault(kind, {})[fake] = name
    return str(fake)


def blueprint_field(api_field: str | None, where: str) -> str:
    """'body.required_skills.0.skill_id' -> 'queues.3.required_skills.0.skill'."""
    if not api_field:
        return where
    parts = api_field.split(".")
    if parts and parts[0] in {"body", "query", "path"}:
        parts = parts[1:]
    parts = [REFERENCES[p][0] if p in REFERENCES else p for p in parts]
    return ".".join([where, *parts])


class ServiceAdapter(Adapter):
    """Configure with the domain's schemas and functions; see the adapters list."""

    def __init__(
        self,
        kind: str,
        create_schema: type[BaseModel],
        update_schema: type[BaseModel],
        list_all: Callable[[Context], Awaitable[list[Any]]],
        to_read: Callable[[Any], BaseModel],
        create: Callable[[Context, BaseModel], Awaitable[Any]],
        update: Callable[[Context, uuid.UUID, BaseModel], Awaitable[Any]],
        delete: Callable[[Context, uuid.UUID], Awaitable[Any]],
        *,
        identity: str = "name",
        unordered: tuple[str, ...] = (),
        write_only: tuple[str, ...] = (),
        drop: tuple[str, ...] = (),
        fill: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        references: Callable[[Context], Awaitable[None]] | None = None,
    ) -> None:
        self.kind = kind
        self.identity = identity
        self.create_schema, self.update_schema = create_schema, update_schema
        self._list_all, self._to_read = list_all, to_read
        self._create, self._update, self._delete = create, update, delete
        self.unordered = unordered
        self.write_only = write_only  # accepted on create, never read back
        self.drop = drop  # read-model fields that are not part of a blueprint
        self.fill = fill  # defaults the API fills at write time, filled for comparison
        self.references = references  # loads names of things outside the blueprint

    def _sorted(self, item: dict[str, Any]) -> dict[str, Any]:
        for k in self.unordered:
            if isinstance(item.get(k), list):
                item[k] = sorted(item[k], key=lambda x: json.dumps(x, sort_keys=True))
        return item

    def _remember(self, ctx: Context, obj: Any) -> dict[str, Any]:
        read = self._to_read(obj).model_dump(mode="json")
        ctx.remember(self.kind, str(read[self.identity]), uuid.UUID(str(read["id"])))
        return read

    async def live(self, ctx: Context) -> list[dict[str, Any]]:
        if self.references:
            await self.references(ctx)
        # Remember every name first: items may refer to others of their kind.
        reads = [self._remember(ctx, obj) for obj in await self._list_all(ctx)]
        out = []
        for read in reads:
            for k in (*META, *self.drop):
                read.pop(k, None)
            out.append(self._sorted(to_names(read, ctx)))
        return out

    def normalize(self, ctx: Context, item: dict[str, Any], where: str) -> dict[str, Any]:
        # Normalization runs before referenced kinds exist: lenient references.
        raw = require_mapping(item, where)
        data = parse(self.create_schema, to_ids(raw, ctx, where, strict=False), where)
        dumped = data.model_dump(mode="json")
        if self.fill:
            dumped = self.fill(dumped)
        for k in (*self.write_only, *self.drop):
            dumped.pop(k, None)
        return self._sorted(to_names(dumped, ctx))

    def comparable(self, item: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in item.items() if k not in self.write_only}

    def refers_to(self, item: dict[str, Any]) -> set[str]:
        found: set[str] = set()

        def walk(v: Any) -> None:
            if isinstance(v, list):
                for x in v:
                    walk(x)
            elif isinstance(v, dict):
                for k, x in v.items():
                    if k in NAMES_TO_IDS and NAMES_TO_IDS[k][1] == self.kind:
                        found.update(
                            n.lower()
                            for n in (x if isinstance(x, list) else [x])
                            if isinstance(n, str)
                        )
                    else:
                        walk(x)

        walk(item)
        return found

    async def _call(self, where: str, fn: Callable[[], Awaitable[Any]]) -> Any:
        try:
            return await fn()
        except SwitchboardError as exc:
            exc.field = blueprint_field(exc.field, where)
            raise

    async def create(self, ctx: Context, item: dict[str, Any], where: str) -> None:
        data = parse(self.create_schema, to_ids(item, ctx, where, strict=True), where)
        obj = await self._call(where, lambda: self._create(ctx, data))
        self._remember(ctx, obj)

    async def _find(self, ctx: Context, name: str) -> uuid.UUID | None:
        for obj in await self._list_all(ctx):
            read = self._to_read(obj)
            if str(getattr(read, self.identity)).lower() == name.lower():
                return uuid.UUID(str(read.id))  # type: ignore[attr-defined]
        return None

    async def update(self, ctx: Context, name: str, item: dict[str, Any], where: str) -> None:
        rid = await self._find(ctx, name)
        assert rid is not None
        body = {k: v for k, v in item.items() if k not in (*self.write_only, self.identity)}
        if item[self.identity] != name:
            body[self.identity] = item[self.identity]  # a change of case in the name
        data = parse(self.update_schema, to_ids(body, ctx, where, strict=True), where)
        await self._call(where, lambda: self._update(ctx, rid, data))

    async def delete(self, ctx: Context, name: str) -> None:
        rid = await self._find(ctx, name)
        if rid is not None:
            await self._call(self.kind, lambda: self._delete(ctx, rid))


def no_if_match() -> IfMatch:
    return IfMatch(None)
