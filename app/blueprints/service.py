"""Load blueprints, find or create their tenant, and run plan / apply / export."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy.ext.asyncio import AsyncSession

from app.blueprints import engine
from app.blueprints.adapters import ADAPTERS
from app.core.errors import InvalidInput, NotFound
from app.db.tenant import bind_tenant, mint_scope
from app.quotas.plans import PLANS
from app.tenants import repository as tenant_repo
from app.tenants.models import Tenant, TenantStatus
from app.users.models import Role
from app.users.service import create_user

TOP_LEVEL = {"version", "tenant"} | {a.kind for a in ADAPTERS}
_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class TenantSpec:
    slug: str
    name: str
    plan: str
    admin: dict[str, Any] | None


def load(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInput(f"cannot read {path}: {exc}", field="file") from exc
    return validate_top(data)


def validate_top(data: object) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise InvalidInput("a blueprint is a mapping", field="blueprint")
    unknown = sorted(set(data) - TOP_LEVEL)
    if unknown:
        raise InvalidInput(f"unknown section '{unknown[0]}'", field=unknown[0])
    if data.get("version", 1) != 1:
        raise InvalidInput("only version 1 is understood", field="version")
    for k in TOP_LEVEL - {"version", "tenant"}:
        if k in data and data[k] is not None and not isinstance(data[k], list):
            raise InvalidInput(f"{k} must be a list", field=k)
    return data


def tenant_spec(data: dict[str, Any]) -> TenantSpec:
    t = data.get("tenant")
    if not isinstance(t, dict) or not isinstance(t.get("slug"), str):
        raise InvalidInput("tenant.slug is required", field="tenant.slug")
    slug = t["slug"]
    if not _SLUG.match(slug):
        raise InvalidInput("lowercase letters, digits and dashes", field="tenant.slug")
    plan = t.get("plan", "trial")
    if plan not in PLANS:
        raise InvalidInput(f"unknown plan '{plan}'", field="tenant.plan")
    admin = t.get("admin")
    if admin is not None and not isinstance(admin, dict):
        raise InvalidInput("tenant.admin must be a mapping", field="tenant.admin")
    return TenantSpec(slug, str(t.get("name") or slug), plan, admin)


async def find_tenant(session: AsyncSession, slug: str) -> Tenant:
    tenant = await tenant_repo.get_by_slug(session, slug)
    if tenant is None:
        raise NotFound(f"no tenant with slug '{slug}'", code="tenant-not-found")
    return tenant


async def ensure_tenant(session: AsyncSession, spec: TenantSpec) -> tuple[Tenant, bool]:
    """The blueprint's tenant; created (with its admin as owner) when missing."""
    tenant = await tenant_repo.get_by_slug(session, spec.slug)
    if tenant is not None:
        return tenant, False
    if not spec.admin or "email" not in spec.admin:
        raise InvalidInput("a new tenant needs tenant.admin.email", field="tenant.admin.email")
    tenant = Tenant(
        name=spec.name, slug=spec.slug, plan=spec.plan, status=TenantStatus.active.value
    )
    session.add(tenant)
    await session.flush()
    scope = mint_scope(tenant.id)
    await bind_tenant(session, scope)
    await create_user(
        session,
        scope,
        email=str(spec.admin["email"]),
        role=Role.owner,
        password=spec.admin.get("password"),
        display_name=spec.admin.get("display_name"),
        email_verified=True,
    )
    return tenant, True


async def context_for(session: AsyncSession, tenant: Tenant) -> engine.Context:
    scope = mint_scope(tenant.id)
    await bind_tenant(session, scope)
    return engine.Context(session=session, scope=scope, plan=tenant.plan)


async def plan(session: AsyncSession, data: dict[str, Any], prune: bool) -> list[engine.Change]:
    spec = tenant_spec(data)
    tenant = await tenant_repo.get_by_slug(session, spec.slug)
    if tenant is None:
        # Nothing exists yet: everything is a create.
        changes = [engine.Change("tenant", spec.slug, "create")]
        ctx = engine.Context(session=session, scope=mint_scope(uuid.uuid4()), plan=spec.plan)
        for ad in ADAPTERS:
            items = {}
            for i, raw in enumerate(data.get(ad.kind) or []):
                item = ad.normalize(ctx, raw, f"{ad.kind}.{i}")
                items[ad.key(item)] = item
            for k in engine.creation_order(ad, items, set()):
                changes.append(engine.Change(ad.kind, str(items[k][ad.identity]), "create"))
        return changes
    ctx = await context_for(session, tenant)
    return await engine.plan(ctx, ADAPTERS, data, prune)


async def apply(session: AsyncSession, data: dict[str, Any], prune: bool) -> list[engine.Change]:
    spec = tenant_spec(data)
    tenant, created = await ensure_tenant(session, spec)
    ctx = await context_for(session, tenant)
    changes = await engine.apply(ctx, ADAPTERS, data, prune)
    return ([engine.Change("tenant", spec.slug, "create")] if created else []) + changes


async def export(session: AsyncSession, slug: str) -> dict[str, Any]:
    tenant = await find_tenant(session, slug)
    ctx = await context_for(session, tenant)
    body = await engine.export(ctx, ADAPTERS)
    return {
        "version": 1,
        "tenant": {"slug": tenant.slug, "name": tenant.name, "plan": tenant.plan},
        **body,
    }


class _Dumper(yaml.SafeDumper):
    pass


def _list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    # Short lists of plain values ("09:00", "17:00"; skills' names) read best inline.
    flow = bool(data) and all(isinstance(x, str | int | float | bool) for x in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _list)


def dump_yaml(data: dict[str, Any]) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
