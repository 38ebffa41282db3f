"""The phone numbers a voice or SMS channel answers on: each must be an active number of
the tenant (else 422 on its index in ``body.config.phone_number_ids``), and a number
serves at most one channel of each type (else 409 ``number-in-use``; the unique index
``ix_channel_numbers_tenant_id_phone_number_id_channel_type`` stands behind the check).
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from app.channels import repository
from app.channels.models import Channel
from app.channels.validation import NUMBERED_TYPES
from app.core.errors import Conflict, InvalidInput
from app.db.integrity import guarded
from app.db.tenant import TenantScope


def _number_in_use(field_path: str, channel_type: str, holder: str | None) -> Conflict:
    where = f" '{holder}'" if holder else ""
    return Conflict(
        f"The number already serves {channel_type} channel{where}; detach it there first.",
        code="number-in-use",
        field=field_path,
    )


async def check_active(session: AsyncSession, scope: TenantScope, ids: list[uuid.UUID]) -> None:
    """422 for a number that is not this tenant's active number (another tenant's id
    reads exactly like one that does not exist)."""
    active = await repository.active_numbers(session, scope, ids)
    for i, number_id in enumerate(ids):
        if number_id not in active:
            raise InvalidInput(
                f"No active phone number {number_id} in this tenant.",
                code="unknown-phone-number",
                field=f"body.config.phone_number_ids.{i}",
            )


async def check_free(
    session: AsyncSession,
    scope: TenantScope,
    ids: list[uuid.UUID],
    channel_type: str,
    except_channel: uuid.UUID | None,
) -> None:
    """409 for a number that already serves another channel of ``channel_type``."""
    in_use = await repository.numbers_in_use(session, scope, ids, channel_type, except_channel)
    for i, number_id in enumerate(ids):
        if number_id in in_use:
            raise _number_in_use(
                f"body.config.phone_number_ids.{i}", channel_type, in_use[number_id]
            )


async def replace(
    session: AsyncSession, scope: TenantScope, channel: Channel, ids: list[uuid.UUID]
) -> None:
    """Attach exactly ``ids`` to the channel (a race on a number answers 409)."""

    async def write() -> None:
        await repository.replace_numbers(session, scope, channel, ids)

    in_use = _number_in_use("body.config.phone_number_ids", channel.type, None)
    await guarded(
        session, write, {"ix_channel_numbers_tenant_id_phone_number_id_channel_type": in_use}
    )


async def numbers_for(
    session: AsyncSession, scope: TenantScope, channels: list[Channel]
) -> dict[uuid.UUID, list[uuid.UUID]]:
    """The numbers of each voice or SMS channel among ``channels``."""
    ids = [c.id for c in channels if c.type in NUMBERED_TYPES]
    return await repository.numbers_of(session, scope, ids)
