"""Tenants as code: plan, apply and export a tenant's provisioning as a blueprint.

A blueprint names things by name (queues, skills, ...), never by id, so it reads well,
diffs well and moves between tenants. Each resource kind has an adapter that turns live
rows into the blueprint's normal form and desired items into the same form, so "no
changes" means the normal forms are equal. Changes go through the same services as the
API (validation, quotas, audit), in one transaction: an apply that fails changes nothing.
"""

from __future__ import annotations

import abc
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings, get_settings
from app.core.errors import InvalidInput
from app.db.tenant import TenantScope


@dataclass
class Context:
    session: AsyncSession
    scope: TenantScope
    plan: str
    settings: Settings = field(default_factory=get_settings)
    # Write-only values a blueprint gives for this apply only (agents' demo passwords).
    write_only: dict[str, str] = field(default_factory=dict)
    # Per kind: name -> id and id -> name, filled as kinds are read.
    ids: dict[str, dict[str, uuid.UUID]] = field(default_factory=dict)
    names: dict[str, dict[uuid.UUID, str]] = field(default_factory=dict)

    def remember(self, kind: str, name: str, rid: uuid.UUID) -> None:
        self.ids.setdefault(kind, {})[name.lower()] = rid
        self.names.setdefault(kind, {})[rid] = name

    def id_of(self, kind: str, name: str | None, where: str) -> uuid.UUID | None:
        if name is None:
            return None
        rid = self.ids.get(kind, {}).get(name.lower())
        if rid is None:
            raise InvalidInput(
                f"no {kind.rstrip('s').replace('_', ' ')} named '{name}'",
                code="blueprint-unknown-reference",
                field=where,
            )
        return rid

    def name_of(self, kind: str, rid: uuid.UUID | None) -> str | None:
        if rid is None:
            return None
        return self.names.get(kind, {}).get(rid, str(rid))


@dataclass(frozen=True)
class Change:
    kind: str
    name: str
    action: str  # create | update | delete
    fields: tuple[str, ...] = ()

    def describe(self) -> str:
        sign = {"create": "+", "update": "~", "delete": "-"}[self.action]
        extra = f" ({', '.join(self.fields)})" if self.fields else ""
        return f"{sign} {self.kind} '{self.name}'{extra}"


class Adapter(abc.ABC):
    kind: str  # the blueprint's key, e.g. "queues"
    identity: str = "name"  # the field that names an item

    def key(self, item: dict[str, Any]) -> str:
        return str(item[self.identity]).lower()

    @abc.abstractmethod
    async def live(self, ctx: Context) -> list[dict[str, Any]]:
        """Live resources in normal form (and remember their ids in ctx)."""

    @abc.abstractmethod
    def normalize(self, ctx: Context, item: dict[str, Any], where: str) -> dict[str, Any]:
        """A desired item in normal form (defaults filled, validated, names kept)."""

    @abc.abstractmethod
    async def create(self, ctx: Context, item: dict[str, Any], where: str) -> None: ...

    @abc.abstractmethod
    async def update(self, ctx: Context, name: str, item: dict[str, Any], where: str) -> None: ...

    @abc.abstractmethod
    async def delete(self, ctx: Context, name: str) -> None: ...

    def refers_to(self, item: dict[str, Any]) -> set[str]:
        """Names (lower-case) of items of this same kind that ``item`` refers to."""
        return set()

    def comparable(self, item: dict[str, Any]) -> dict[str, Any]:
        """The part of the normal form that decides "changed" (write-only fields drop out)."""
        return item


def _diff_fields(a: dict[str, Any], b: dict[str, Any]) -> tuple[str, ...]:
    return tuple(sorted(k for k in (set(a) | set(b)) - {"_where"} if a.get(k) != b.get(k)))


def _clean(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k != "_where"}


async def _desired(
    ctx: Context, adapters: list[Adapter], blueprint: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for ad in adapters:
        items = blueprint.get(ad.kind) or []
        seen: dict[str, dict[str, Any]] = {}
        for i, raw in enumerate(items):
            where = f"{ad.kind}.{i}"
            item = ad.normalize(ctx, raw, where)
            k = ad.key(item)
            if k in seen:
                raise InvalidInput(
                    f"'{item[ad.identity]}' appears twice in {ad.kind}",
                    code="blueprint-duplicate",
                    field=f"{where}.{ad.identity}",
                )
            item["_where"] = where  # its place in the file, for error paths (not compared)
            seen[k] = item
        out[ad.kind] = seen
    return out


async def plan(
    ctx: Context, adapters: list[Adapter], blueprint: dict[str, Any], prune: bool = False
) -> list[Change]:
    desired = await _desired(ctx, adapters, blueprint)
    changes: list[Change] = []
    deletes: list[Change] = []
    for ad in adapters:
        live = {ad.key(x): x for x in await ad.live(ctx)}
        for k in creation_order(ad, desired[ad.kind], set(live)):
            changes.append(Change(ad.kind, str(desired[ad.kind][k][ad.identity]), "create"))
        for k, item in desired[ad.kind].items():
            name = str(item[ad.identity])
            if k in live:
                fields = _diff_fields(ad.comparable(live[k]), ad.comparable(item))
                if fields:
                    changes.append(Change(ad.kind, name, "update", fields))
        if prune:
            deletes += [
                Change(ad.kind, str(x[ad.identity]), "delete")
                for k, x in live.items()
                if k not in desired[ad.kind]
            ]
    return changes + list(reversed(deletes))


async def apply(
    ctx: Context, adapters: list[Adapter], blueprint: dict[str, Any], prune: bool = False
) -> list[Change]:
    """Make the tenant match the blueprint. Kinds go in dependency order; inside a kind,
    creates first, then updates (so items may refer to others of their kind)."""
    desired = await _desired(ctx, adapters, blueprint)
    done: list[Change] = []
    for ad in adapters:
        live = {ad.key(x): x for x in await ad.live(ctx)}
        created = set()
        for k in creation_order(ad, desired[ad.kind], set(live)):
            item = desired[ad.kind][k]
            await ad.create(ctx, _clean(item), item["_where"])
            created.add(k)
            done.append(Change(ad.kind, str(item[ad.identity]), "create"))
        live = {ad.key(x): x for x in await ad.live(ctx)}
        for k, item in desired[ad.kind].items():
            fields = _diff_fields(ad.comparable(live[k]), ad.comparable(item))
            if fields:
                await ad.update(ctx, str(live[k][ad.identity]), _clean(item), item["_where"])
                if k not in created:
                    done.append(Change(ad.kind, str(item[ad.identity]), "update", fields))
        await ad.live(ctx)  # refresh ids for the kinds that follow
    if prune:
        for ad in reversed(adapters):
            live = {ad.key(x): x for x in await ad.live(ctx)}
            for k, x in live.items():
                if k not in desired[ad.kind]:
                    await ad.delete(ctx, str(x[ad.identity]))
                    done.append(Change(ad.kind, str(x[ad.identity]), "delete"))
    return done


def creation_order(ad: Adapter, items: dict[str, dict[str, Any]], existing: set[str]) -> list[str]:
    """New items, each after the new items of its kind it refers to (blueprint order
    otherwise; a reference cycle is left to the service to refuse)."""
    todo = [k for k in items if k not in existing]
    order: list[str] = []
    placed = set(existing)
    while todo:
        ready = [k for k in todo if ad.refers_to(items[k]) & set(todo) - {k} <= placed]
        nxt = ready[0] if ready else todo[0]
        order.append(nxt)
        placed.add(nxt)
        todo.remove(nxt)
    return order


async def export(ctx: Context, adapters: list[Adapter]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for ad in adapters:
        items = sorted(await ad.live(ctx), key=ad.key)
        if items:
            out[ad.kind] = items
    return out
