"""Proactive rules: names unique per tenant (case-insensitive), a rule applies to one
webchat channel of the tenant or to all of them."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.concurrency import IfMatch
from app.core.errors import Conflict, InvalidInput, NotFound
from app.db.base import utcnow
from app.db.integrity import guarded
from app.db.tenant import TenantScope
from app.proactive import repository
from app.proactive.models import ProactiveRule
from app.proactive.schemas import RuleCreate, RuleUpdate

NAME_INDEX = "ix_proactive_rules_tenant_id_name"


def _name_taken(name: str) -> Conflict:
    return Conflict(
        f"A proactive rule named '{name}' exists.",
        code="proactive-rule-name-taken",
        field="body.name",
    )


def not_found() -> NotFound:
    return NotFound("No such proactive rule.", code="proactive-rule-not-found")


async def _check_channel(session: AsyncSession, scope: TenantScope, channel_id: uuid.UUID) -> None:
    kind = await repository.channel_type(session, scope, channel_id)
    if kind is None:
        raise InvalidInput(
            "body.channel_id: no such channel in this tenant",
            code="unknown-reference",
            field="body.channel_id",
        )
    if kind != "webchat":
        raise InvalidInput(
            f"body.channel_id: proactive rules run in the web chat widget; this is a {kind} "
            "channel",
            code="channel-not-webchat",
            field="body.channel_id",
        )


async def get(
    session: AsyncSession, scope: TenantScope, rule_id: uuid.UUID, *, for_update: bool = False
) -> ProactiveRule:
    rule = await repository.get(session, scope, rule_id, for_update=for_update)
    if rule is None:
        raise not_found()
    return rule


async def create(session: AsyncSession, scope: TenantScope, data: RuleCreate) -> ProactiveRule:
    if await repository.get_by_name(session, scope, data.name):
        raise _name_taken(data.name)
    if data.channel_id is not None:
        await _check_channel(session, scope, data.channel_id)
    rule = ProactiveRule(
        tenant_id=scope.tenant_id,
        name=data.name,
        enabled=data.enabled,
        channel_id=data.channel_id,
        conditions=data.conditions.stored(),
        action=data.action,
        message=data.message,
        priority=data.priority,
    )

    async def insert() -> ProactiveRule:
        session.add(rule)
        await session.flush()
        return rule

    return await guarded(session, insert, {NAME_INDEX: _name_taken(data.name)})


async def update(
    session: AsyncSession,
    scope: TenantScope,
    rule_id: uuid.UUID,
    data: RuleUpdate,
    if_match: IfMatch,
) -> tuple[ProactiveRule, dict[str, Any]]:
    """The rule and what changed (for the audit log)."""
    rule = await get(session, scope, rule_id, for_update=True)
    if_match.check(rule.version)
    changes: dict[str, Any] = data.model_dump(exclude_unset=True, mode="json")
    if data.conditions is not None:
        changes["conditions"] = data.conditions.stored()
    if "channel_id" in changes:
        changes["channel_id"] = data.channel_id
        if data.channel_id is not None:
            await _check_channel(session, scope, data.channel_id)
    new_name = changes.get("name")
    if new_name and new_name.lower() != rule.name.lower():
        other = await repository.get_by_name(session, scope, new_name)
        if other is not None and other.id != rule.id:
            raise _name_taken(new_name)
    changed = {k: v for k, v in changes.items() if getattr(rule, k) != v}
    if not changed:
        return rule, {}  # nothing changed: same version, same ETag
    for k, v in changed.items():
        setattr(rule, k, v)
    rule.version += 1
    rule.updated_at = utcnow()

    async def flush() -> ProactiveRule:
        await session.flush()
        return rule

    await guarded(session, flush, {NAME_INDEX: _name_taken(new_name or "")})
    return rule, changed


async def delete(
    session: AsyncSession, scope: TenantScope, rule_id: uuid.UUID, if_match: IfMatch
) -> ProactiveRule:
    """Delete the rule; its past decisions stay (they name the rule's id)."""
    rule = await get(session, scope, rule_id, for_update=True)
    if_match.check(rule.version)
    await session.delete(rule)
    await session.flush()
    return rule
