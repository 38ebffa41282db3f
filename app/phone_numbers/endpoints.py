from __future__ import annotations

import uuid
from datetime import timedelta
from functools import partial
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response, status

from app.audit.service import audit
from app.auth.principal import Principal, require
from app.core.concurrency import IfMatchDep, etag, with_etag
from app.core.errors import SwitchboardError
from app.core.openapi import ETAG_HEADER, PRECONDITION_FAILED, WITH_ETAG, problem
from app.core.pagination import Page, PageParams, page_of, page_params
from app.db.engine import SessionDep
from app.idempotency.service import IdempotencyDep
from app.phone_numbers import repository, service
from app.phone_numbers.carriers import AvailableNumber, Carrier, Carriers, NumberQuery
from app.phone_numbers.models import PhoneNumber
from app.phone_numbers.openapi import (
    ATTACHED,
    BAD_NUMBER,
    BAD_QUERY,
    CARRIER_FAILED,
    NO_FLOW,
    NOT_FOUND,
    NOT_OFFERED,
    RELEASED,
    SCOPE_OR_QUOTA,
    UNAVAILABLE,
)
from app.phone_numbers.schemas import (
    AvailableNumberRead,
    AvailableNumbers,
    Capabilities,
    MonthlyPrice,
    NumberTypeName,
    PhoneNumberClaim,
    PhoneNumberRead,
    PhoneNumberUpdate,
)

router = APIRouter(prefix="/v1/phone-numbers", tags=["phone-numbers"])

NumbersRead = Annotated[Principal, require("phone_numbers:read")]
NumbersWrite = Annotated[Principal, require("phone_numbers:write")]


async def get_carriers(request: Request, session: SessionDep) -> Carriers:
    """The configured carriers (a dependency, so a deployment or a test can swap them)."""
    state = request.app.state
    shared: dict[str, Carrier] | None = getattr(state, "phone_number_carriers", None)
    if shared is None:
        shared = state.phone_number_carriers = {}
    taken = partial(repository.unavailable_among, session)
    return Carriers.from_settings(state.settings, taken=taken, shared=shared)


CarriersDep = Annotated[Carriers, Depends(get_carriers)]


def _read(number: PhoneNumber) -> PhoneNumberRead:
    return PhoneNumberRead(
        id=number.id,
        number=number.e164,
        country=number.country,
        type=number.number_type,
        carrier=number.carrier,
        flow_id=number.flow_id,
        status="released" if number.status == "released" else "active",
        claimed_at=number.claimed_at,
        released_at=number.released_at,
        version=number.version,
        created_at=number.created_at,
        updated_at=number.updated_at,
    )


def _available(n: AvailableNumber) -> AvailableNumberRead:
    price = n.monthly_price
    return AvailableNumberRead(
        number=n.e164,
        country=n.country,
        type=n.number_type,
        locality=n.locality,
        capabilities=Capabilities(voice=n.voice, sms=n.sms),
        monthly_price=MonthlyPrice(amount_minor=price.amount_minor, currency=price.currency)
        if price
        else None,
    )


def _json(number: PhoneNumber) -> Response:
    return with_etag(_read(number), number.version)


@router.get(
    "/available",
    response_model=AvailableNumbers,
    responses={422: problem("Bad filter", BAD_QUERY), 502: CARRIER_FAILED},
)
async def search_available_numbers(
    session: SessionDep,
    principal: NumbersRead,
    carriers: CarriersDep,
    country: Annotated[
        str, Query(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2", examples=["US"])
    ],
    type: Annotated[NumberTypeName, Query(description="Kind of number")] = "local",
    area_code: Annotated[
        str | None,
        Query(
            pattern=r"^[0-9]{2,5}$",
            description="Leading digits of the national number (US: the 3-digit NPA)",
            examples=["415"],
        ),
    ] = None,
    contains: Annotated[
        str | None,
        Query(pattern=r"^[0-9]{2,10}$", description="Digits the national number contains"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=50, description="Most numbers to return")] = 20,
) -> AvailableNumbers:
    """Search the carrier for numbers you can claim now. Numbers held on Switchboard or
    cooling down after a release are left out. The sandbox carrier (the default) offers
    only numbers reserved for fiction, such as +1 415 555-0100 to 0199."""
    query = NumberQuery(country, type, area_code, contains, limit)
    found = await service.search(session, carriers, query)
    return AvailableNumbers(carrier=carriers.default_name, items=[_available(n) for n in found])


@router.api_route("/available", methods=["PATCH", "DELETE"], include_in_schema=False)
async def available_is_read_only() -> Response:
    """'available' is a search, not a number id: without this, PATCH and DELETE would
    reach /{phone_number_id} and answer 422 for a malformed id instead of 405."""
    raise SwitchboardError(
        "Only GET is allowed here.",
        status=405,
        code="method-not-allowed",
        title="Method not allowed",
        headers={"Allow": "GET, HEAD"},
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=PhoneNumberRead,
    responses={
        200: {
            "description": "You already hold this number: it is answered unchanged",
            "model": PhoneNumberRead,
            "headers": ETAG_HEADER,
        },
        201: {"description": "Claimed", "headers": ETAG_HEADER},
        403: SCOPE_OR_QUOTA,
        409: problem("Someone holds the number, or it is cooling down", UNAVAILABLE),
        422: problem("Bad number or flow", BAD_NUMBER, NOT_OFFERED, NO_FLOW),
        502: CARRIER_FAILED,
    },
)
async def claim_phone_number(
    body: PhoneNumberClaim,
    request: Request,
    session: SessionDep,
    principal: NumbersWrite,
    carriers: CarriersDep,
    idem: IdempotencyDep,
) -> Response:
    """Claim a number (find one with GET /v1/phone-numbers/available). Claiming a number
    you already hold answers 200 with it; nobody else can hold it meanwhile."""
    if (replay := await idem.replay()) is not None:
        return replay
    claimed = await service.claim(
        session, principal.scope, plan=principal.tenant.plan, carriers=carriers, data=body
    )
    number = claimed.number
    audit(
        request,
        "phone_number.claim",
        "phone_number",
        number.id,
        number=number.e164,
        already_held=not claimed.created or None,
    )
    return await idem.respond(
        201 if claimed.created else 200, _read(number), headers={"ETag": etag(number.version)}
    )


@router.get("", response_model=Page[PhoneNumberRead])
async def list_phone_numbers(
    session: SessionDep,
    principal: NumbersRead,
    page: Annotated[PageParams, Depends(page_params)],
    status: Annotated[
        Literal["active", "released"] | None, Query(description="Only numbers in this state")
    ] = None,
    country: Annotated[str | None, Query(pattern=r"^[A-Z]{2}$", examples=["US"])] = None,
) -> Page[PhoneNumberRead]:
    """Your numbers, newest first: held ones and released ones (filter with status)."""
    rows = await repository.list_page(
        session, principal.scope, page.limit, page.after_id, status, country
    )
    return page_of(rows, page.limit, _read)


@router.get(
    "/{phone_number_id}",
    response_model=PhoneNumberRead,
    responses={200: WITH_ETAG, 404: NOT_FOUND},
)
async def get_phone_number(
    phone_number_id: uuid.UUID, session: SessionDep, principal: NumbersRead
) -> Response:
    return _json(await service.get(session, principal.scope, phone_number_id))


@router.patch(
    "/{phone_number_id}",
    response_model=PhoneNumberRead,
    responses={
        200: WITH_ETAG,
        404: NOT_FOUND,
        409: problem("The number was released", RELEASED),
        412: PRECONDITION_FAILED,
        422: problem("No such flow", NO_FLOW),
    },
)
async def update_phone_number(
    phone_number_id: uuid.UUID,
    body: PhoneNumberUpdate,
    request: Request,
    session: SessionDep,
    principal: NumbersWrite,
    if_match: IfMatchDep,
) -> Response:
    """Point the number at a contact flow (or detach it with null)."""
    number = await service.update(session, principal.scope, phone_number_id, body, if_match)
    audit(
        request,
        "phone_number.update",
        "phone_number",
        number.id,
        flow_id=str(number.flow_id) if number.flow_id else None,
    )
    return _json(number)


@router.delete(
    "/{phone_number_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        404: NOT_FOUND,
        409: problem("A channel answers the number; detach it from the channel first", ATTACHED),
        412: PRECONDITION_FAILED,
        502: CARRIER_FAILED,
    },
)
async def release_phone_number(
    phone_number_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    principal: NumbersWrite,
    carriers: CarriersDep,
    if_match: IfMatchDep,
) -> Response:
    """Release the number. It stays listed (status released), and nobody can claim it
    again until its cool-down has passed. A number attached to a channel is refused
    (409 ``number-attached``, naming the channels in ``used_by``): remove it from the
    channel's ``config.phone_number_ids`` first."""
    cooldown = timedelta(days=request.app.state.settings.number_cooldown_days)
    number, released = await service.release(
        session,
        principal.scope,
        phone_number_id,
        if_match,
        carriers=carriers,
        cooldown=cooldown,
    )
    audit(
        request,
        "phone_number.release",
        "phone_number",
        number.id,
        number=number.e164,
        already_released=not released or None,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)
