"""Phone numbers: search a carrier, claim a number (one holder across all tenants), point
it at a contact flow, release it into a cool-down.

The carrier is called last in each change, after every database check and write has
passed, so a refusal of ours never leaves a number claimed at the carrier, and a carrier
failure rolls back everything we wrote (the request's transaction does).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta

import phonenumbers
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.concurrency import IfMatch
from app.core.errors import Conflict, InvalidInput, NotFound, SwitchboardError
from app.db.base import utcnow
from app.db.integrity import guarded
from app.db.tenant import TenantScope
from app.phone_numbers import metering, repository
from app.phone_numbers.carriers import (
    AvailableNumber,
    CarrierFailure,
    Carriers,
    NumberNotOffered,
    NumberQuery,
    NumberUnavailable,
)
from app.phone_numbers.e164 import SUPPORTED_COUNTRIES, facts
from app.phone_numbers.models import PhoneNumber
from app.phone_numbers.schemas import PhoneNumberClaim, PhoneNumberUpdate
from app.quotas import service as quotas

log = logging.getLogger("switchboard.phone_numbers")


class CarrierError(SwitchboardError):
    status, code, title = 502, "carrier-error", "Carrier error"


def carrier_error(exc: CarrierFailure) -> CarrierError:
    log.warning("carrier failure: %s", exc)
    return CarrierError(
        f"The carrier ({exc.carrier}) failed: {exc.reason}. Nothing was changed; try again later."
    )


def _unavailable() -> Conflict:
    # The same answer whoever holds it (or whether it is cooling down after a release),
    # so that no tenant learns about another's numbers.
    return Conflict(
        "This number is not available: it is held, or it was released recently and is "
        "cooling down.",
        code="number-unavailable",
        field="body.number",
    )


def _flow_not_found() -> InvalidInput:
    return InvalidInput(
        "No contact flow with this id.", code="flow-not-found", field="body.flow_id"
    )


async def get(
    session: AsyncSession, scope: TenantScope, number_id: uuid.UUID, *, for_update: bool = False
) -> PhoneNumber:
    number = await repository.get(session, scope, number_id, for_update=for_update)
    if number is None:
        raise NotFound("No such phone number.", code="phone-number-not-found")
    return number


# --- search ------------------------------------------------------------------------


def check_query(query: NumberQuery) -> None:
    if query.country not in SUPPORTED_COUNTRIES:
        raise InvalidInput(
            "is not an ISO 3166-1 country code with a numbering plan we know",
            field="query.country",
        )
    nanp = phonenumbers.country_code_for_region(query.country) == 1
    if nanp and query.area_code is not None and not _is_nanp_area_code(query.area_code):
        raise InvalidInput(
            "must be a 3-digit area code (NPA) such as 415 in this country",
            field="query.area_code",
        )


def _is_nanp_area_code(area_code: str) -> bool:
    return len(area_code) == 3 and area_code[0] in "23456789"


async def search(
    session: AsyncSession, carriers: Carriers, query: NumberQuery
) -> list[AvailableNumber]:
    """Numbers the carrier offers now, minus those held or cooling down on the platform."""
    check_query(query)
    try:
        found = await carriers.default.search(query)
    except CarrierFailure as exc:
        raise carrier_error(exc) from exc
    taken = await repository.unavailable_among(session, [n.e164 for n in found])
    return [n for n in found if n.e164 not in taken][: query.limit]


# --- claim -------------------------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    number: PhoneNumber
    created: bool  # False: the tenant already held it; nothing changed


async def claim(
    session: AsyncSession,
    scope: TenantScope,
    *,
    plan: str,
    carriers: Carriers,
    data: PhoneNumberClaim,
) -> Claimed:
    """Claim ``data.number`` for the tenant. Claiming a number the tenant already holds
    answers that number unchanged (a retry is safe without an Idempotency-Key)."""
    if data.flow_id is not None and not await repository.flow_exists(session, scope, data.flow_id):
        raise _flow_not_found()
    register = await repository.lock_claim(session, data.number)
    if register.tenant_id == scope.tenant_id and register.phone_number_id is not None:
        held = await repository.get(session, scope, register.phone_number_id)
        if held is not None and held.status == "active":
            return Claimed(held, created=False)
    now = utcnow()
    cooling = register.available_after is not None and register.available_after > now
    if register.tenant_id is not None or cooling:
        raise _unavailable()
    await quotas.ensure_room(session, scope, plan, "phone_numbers")

    try:
        carrier = carriers.default
    except CarrierFailure as exc:
        raise carrier_error(exc) from exc
    known = facts(data.number)
    number = PhoneNumber(
        tenant_id=scope.tenant_id,
        e164=data.number,
        country=known.country,
        number_type=known.number_type,
        carrier=carrier.name,
        flow_id=data.flow_id,
        status="active",
        claimed_at=now,
    )

    async def insert() -> PhoneNumber:
        session.add(number)
        await session.flush()
        return number

    await guarded(
        session,
        insert,
        {
            "fk_phone_numbers_flow": _flow_not_found(),
            "ix_phone_numbers_tenant_id_e164_active": _unavailable(),
        },
    )
    register.tenant_id, register.phone_number_id = scope.tenant_id, number.id
    register.claimed_at, register.available_after = now, None
    await metering.record_day(session, scope, number, now.date())
    await session.flush()

    try:
        number.carrier_ref = await carrier.claim(data.number)
    except NumberUnavailable as exc:
        raise _unavailable() from exc
    except NumberNotOffered as exc:
        raise InvalidInput(
            f"The {carrier.name} carrier does not offer this number. The sandbox offers only "
            "numbers reserved for fiction, such as +1 NPA 555-0100 to 0199 or "
            "+44 20 7946 0000 to 0999; search GET /v1/phone-numbers/available.",
            code="number-not-offered",
            field="body.number",
        ) from exc
    except CarrierFailure as exc:
        raise carrier_error(exc) from exc
    await session.flush()
    return Claimed(number, created=True)


# --- update ------------------------------------------------------------------------


def _released() -> Conflict:
    return Conflict(
        "This number was released; claim it again to use it.", code="phone-number-released"
    )


async def update(
    session: AsyncSession,
    scope: TenantScope,
    number_id: uuid.UUID,
    data: PhoneNumberUpdate,
    if_match: IfMatch,
) -> PhoneNumber:
    number = await get(session, scope, number_id, for_update=True)
    if_match.check(number.version)
    changes = data.model_dump(exclude_unset=True)
    if "flow_id" not in changes or changes["flow_id"] == number.flow_id:
        return number  # nothing changed: same version, same ETag
    if number.status != "active":
        raise _released()
    flow_id = changes["flow_id"]
    if flow_id is not None and not await repository.flow_exists(session, scope, flow_id):
        raise _flow_not_found()
    number.flow_id = flow_id
    number.version += 1
    number.updated_at = utcnow()

    async def flush() -> PhoneNumber:
        await session.flush()
        return number

    return await guarded(session, flush, {"fk_phone_numbers_flow": _flow_not_found()})


# --- release -----------------------------------------------------------------------


def _attached(channels: list[tuple[uuid.UUID, str, str]]) -> Conflict:
    names = ", ".join(f"'{name}'" for _, name, _ in channels)
    what = "channel" if len(channels) == 1 else "channels"
    return Conflict(
        f"The number is attached to {what} {names}; detach it there first "
        "(PATCH /v1/channels/{channel_id} with config.phone_number_ids without it).",
        code="number-attached",
        used_by=[
            {"type": "channel", "id": str(i), "name": name, "channel_type": kind}
            for i, name, kind in channels
        ],
    )


async def release(
    session: AsyncSession,
    scope: TenantScope,
    number_id: uuid.UUID,
    if_match: IfMatch,
    *,
    carriers: Carriers,
    cooldown: timedelta,
) -> tuple[PhoneNumber, bool]:
    """Release the number at its carrier and start its cool-down; returns (number,
    released now). Releasing a released number again changes nothing. A number a
    channel answers is refused (409 ``number-attached``): detach it there first."""
    number = await get(session, scope, number_id, for_update=True)
    if_match.check(number.version)
    if number.status != "active":
        return number, False
    # Locked FOR UPDATE: channels that attached it have committed; new ones wait and
    # then find it released.
    channels = await repository.channels_answering(session, scope, number.id)
    if channels:
        raise _attached(channels)
    now = utcnow()
    number.status, number.released_at = "released", now
    number.flow_id = None  # a released number must not keep a flow from being deleted
    number.version += 1
    number.updated_at = now
    register = await repository.lock_claim(session, number.e164)
    if register.phone_number_id == number.id:
        register.tenant_id, register.phone_number_id, register.claimed_at = None, None, None
        register.available_after = now + cooldown
    await session.flush()
    if number.carrier_ref:
        try:
            await carriers.named(number.carrier).release(number.carrier_ref)
        except CarrierFailure as exc:
            raise carrier_error(exc) from exc
    return number, True


async def count_active(session: AsyncSession, scope: TenantScope) -> int:
    return await repository.count_active(session, scope)


quotas.register_counter("phone_numbers", count_active)
