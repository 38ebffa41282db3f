"""Customer profiles (REST): profiles, identities, merge and split, consent, timeline.

The business rules are in ``app.customers.profiles``, ``merging`` and ``timeline``;
docs/decisions/0017-customer-profiles.md says why they are as they are.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime

from app.audit.service import audit
from app.auth.principal import Principal, require
from app.auth.scopes import register
from app.core.concurrency import IfMatchDep, etag, with_etag
from app.core.errors import InvalidInput
from app.core.openapi import ETAG_HEADER, PRECONDITION_FAILED, WITH_ETAG, example, problem
from app.core.pagination import PageParams, page_params, page_rows
from app.customers import merging, profiles, timeline
from app.customers.schemas import (
    ChangePage,
    ChangeRead,
    ConsentChannel,
    ConsentRead,
    ConsentUpdate,
    CustomerCreate,
    CustomerPage,
    CustomerRead,
    CustomerUpdate,
    IdentityIn,
    IdentityRead,
    MergeRequest,
    MergeResult,
    SplitRequest,
    SplitResult,
    TimelinePage,
)
from app.db.engine import SessionDep
from app.idempotency.service import IdempotencyDep
from app.routing.connection import raw
from app.routing.snapshots import decode_json

register(
    "customers:read",
    "Read customer profiles, identities, consent and timelines",
    ("owner", "admin", "supervisor", "agent"),
)
register(
    "customers:write",
    "Create, change, merge and split customer profiles; record consent",
    ("owner", "admin", "supervisor"),
)

router = APIRouter(prefix="/v1/customers", tags=["customers"])

CustomersRead = Annotated[Principal, require("customers:read")]
CustomersWrite = Annotated[Principal, require("customers:write")]

_ID = "019a2b7c-0000-7000-8000-0000000000d1"
CUSTOMER_NOT_FOUND = example(404, "customer-not-found", "No such customer.")
NOT_FOUND = problem("No such customer (or another tenant's)", CUSTOMER_NOT_FOUND)
MERGED = example(
    409,
    "customer-merged",
    f"The customer was merged into {_ID}; change that profile instead.",
    field="path.customer_id",
    merged_into_id=_ID,
)
IDENTITY_TAKEN = example(
    409,
    "identity-taken",
    f"body.identities.0.value: the identity belongs to customer {_ID}; merge the two "
    "profiles if they are one person.",
    field="body.identities.0.value",
    customer_id=_ID,
)
BAD_IDENTITY = example(
    422,
    "validation-failed",
    "body.identities.0.value: not a phone number in international form (+<country><number>)",
    field="body.identities.0.value",
)
BAD_TIMEZONE = example(
    422,
    "validation-failed",
    "body.timezone: unknown IANA time zone 'Mars/Olympus' (for example 'Europe/London')",
    field="body.timezone",
)
TOO_MANY = example(
    422,
    "too-many-attributes",
    "body.attributes: the profile would have 51 attributes; at most 50 (send null for keys "
    "to delete)",
    field="body.attributes",
)


def _actor(principal: Principal) -> profiles.Actor:
    return profiles.Actor(principal.actor_type, str(principal.actor_id))


def _body(customer: CustomerRead) -> dict[str, Any]:
    out: dict[str, Any] = customer.model_dump(mode="json")
    return out


async def _answer(
    session: SessionDep, principal: Principal, customer_id: uuid.UUID, status_code: int = 200
) -> tuple[CustomerRead, JSONResponse]:
    conn = await raw(session)
    customer = await profiles.read(conn, principal.scope, customer_id)
    return customer, with_etag(_body(customer), customer.version, status_code)


# ---------------------------------------------------------------------------- profiles


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=CustomerRead,
    summary="Create a customer profile",
    responses={
        201: {"description": "Created", "headers": ETAG_HEADER},
        409: problem("An identity belongs to another profile", IDENTITY_TAKEN),
        422: problem("Bad input: the problem names the field", BAD_IDENTITY, BAD_TIMEZONE),
    },
)
async def create_customer(
    body: CustomerCreate,
    request: Request,
    session: SessionDep,
    principal: CustomersWrite,
    idem: IdempotencyDep,
) -> Response:
    """A profile reached through its identities (normalised: a phone number to E.164,
    an email address to lower case). An identity held by another profile answers 409
    ``identity-taken`` naming the holder: profiles are merged explicitly, never by a
    claim."""
    if (replay := await idem.replay()) is not None:
        return replay
    conn = await raw(session)
    customer_id = await profiles.create(conn, principal.scope, body)
    customer = await profiles.read(conn, principal.scope, customer_id)
    audit(
        request,
        "customer.create",
        "customer",
        customer_id,
        identities=[{"id": str(i.id), "kind": i.kind} for i in customer.identities],
        attributes=sorted(customer.attributes) or None,
    )
    headers = {"ETag": etag(customer.version), "Location": f"/v1/customers/{customer_id}"}
    return await idem.respond(201, _body(customer), headers=headers)


@router.get("", response_model=CustomerPage, summary="List or look up customers")
async def list_customers(
    session: SessionDep,
    principal: CustomersRead,
    page: Annotated[PageParams, Depends(page_params)],
    identity: Annotated[
        str | None,
        Query(
            max_length=400,
            description="kind:value, e.g. phone:+1 202 555 0123 (normalised, exact match)",
        ),
    ] = None,
    q: Annotated[
        str | None,
        Query(min_length=1, max_length=100, description="Display name prefix (any case)"),
    ] = None,
) -> Response:
    """Live profiles (not merged ones), newest first."""
    if q is not None and any(ord(c) < 32 or ord(c) == 127 for c in q):
        raise InvalidInput("query.q: must not contain control characters", field="query.q")
    conn = await raw(session)
    found = profiles.parse_identity_filter(identity) if identity is not None else None
    rows = await profiles.list_rows(
        conn, principal.scope, page.limit, page.after_id, identity=found, name_prefix=q
    )
    rows, next_cursor = page_rows(rows, page.limit, key=lambda r: r["id"])
    items = await profiles.reads(conn, principal.scope, rows)
    return JSONResponse({"items": [_body(c) for c in items], "next_cursor": next_cursor})


@router.get(
    "/{customer_id}",
    response_model=CustomerRead,
    summary="Get a customer profile",
    responses={200: WITH_ETAG, 404: NOT_FOUND},
)
async def get_customer(
    customer_id: uuid.UUID, session: SessionDep, principal: CustomersRead
) -> Response:
    """The profile with its identities and consents. A merged profile still answers,
    with ``merged_into_id`` naming the survivor."""
    _, response = await _answer(session, principal, customer_id)
    return response


@router.patch(
    "/{customer_id}",
    response_model=CustomerRead,
    summary="Change a customer profile",
    responses={
        200: WITH_ETAG,
        404: NOT_FOUND,
        409: problem("The profile was merged into another", MERGED),
        412: PRECONDITION_FAILED,
        422: problem("Bad input: the problem names the field", BAD_TIMEZONE, TOO_MANY),
    },
)
async def update_customer(
    customer_id: uuid.UUID,
    body: CustomerUpdate,
    request: Request,
    session: SessionDep,
    principal: CustomersWrite,
    if_match: IfMatchDep,
) -> Response:
    """``attributes`` is a JSON merge patch: keys sent are set, a key sent as null is
    deleted, others stay. Send If-Match with the ETag you read; a stale one answers 412."""
    conn = await raw(session)
    changed = await profiles.update(conn, principal.scope, customer_id, body, if_match)
    audit(request, "customer.update", "customer", customer_id, changed=changed)
    _, response = await _answer(session, principal, customer_id)
    return response


# ---------------------------------------------------------------------------- identities


@router.post(
    "/{customer_id}/identities",
    status_code=status.HTTP_201_CREATED,
    response_model=IdentityRead,
    summary="Add an identity to a customer",
    responses={
        200: {"description": "The profile already had this identity", "model": IdentityRead},
        404: NOT_FOUND,
        409: problem(
            "The identity belongs to another profile, or this one was merged",
            example(
                409,
                "identity-taken",
                f"body.value: the identity belongs to customer {_ID}; merge the two "
                "profiles if they are one person.",
                field="body.value",
                customer_id=_ID,
            ),
            MERGED,
        ),
        422: problem(
            "Bad input",
            example(
                422,
                "validation-failed",
                "body.value: not an email address (The email address is not valid.)",
                field="body.value",
            ),
        ),
    },
)
async def add_identity(
    customer_id: uuid.UUID,
    body: IdentityIn,
    request: Request,
    session: SessionDep,
    principal: CustomersWrite,
    idem: IdempotencyDep,
) -> Response:
    if (replay := await idem.replay()) is not None:
        return replay
    conn = await raw(session)
    added = await profiles.add_identity(
        conn, principal.scope, customer_id, body.kind, body.value, body.verified, _actor(principal)
    )
    if added.created:
        audit(
            request,
            "customer.identity_add",
            "customer",
            customer_id,
            identity_id=str(added.identity.id),
            kind=added.identity.kind,
        )
    code = 201 if added.created else 200
    return await idem.respond(code, added.identity.model_dump(mode="json"))


@router.delete(
    "/{customer_id}/identities/{identity_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove an identity from a customer",
    responses={
        404: problem(
            "No such customer, or the customer has no such identity",
            CUSTOMER_NOT_FOUND,
            example(
                404,
                "identity-not-found",
                "The customer has no such identity.",
                field="path.identity_id",
            ),
        ),
        409: problem(
            "The last identity, or a merged profile",
            example(
                409,
                "last-identity",
                "This is the customer's only identity; add another one first.",
                field="path.identity_id",
            ),
            MERGED,
        ),
        412: PRECONDITION_FAILED,
    },
)
async def remove_identity(
    customer_id: uuid.UUID,
    identity_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    principal: CustomersWrite,
    if_match: IfMatchDep,
) -> Response:
    """Detach the identity: messages through it will open a new profile. Conversations
    opened through it stay with this one. If-Match takes the profile's ETag."""
    conn = await raw(session)
    kind = await profiles.remove_identity(
        conn, principal.scope, customer_id, identity_id, if_match, _actor(principal)
    )
    audit(
        request,
        "customer.identity_remove",
        "customer",
        customer_id,
        identity_id=str(identity_id),
        kind=kind,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# ---------------------------------------------------------------------------- merge, split


@router.post(
    "/{customer_id}/merge",
    response_model=MergeResult,
    summary="Merge another profile into this one",
    responses={
        200: {"description": "Merged: the survivor", "headers": ETAG_HEADER},
        404: problem(
            "Either profile is not this tenant's",
            CUSTOMER_NOT_FOUND,
            example(404, "customer-not-found", "No such customer.", field="body.customer_id"),
        ),
        409: problem(
            "Either profile was merged already",
            MERGED,
            example(
                409,
                "customer-merged",
                f"The customer was merged into {_ID}; change that profile instead.",
                field="body.customer_id",
                merged_into_id=_ID,
            ),
        ),
        422: problem(
            "A profile into itself",
            example(
                422,
                "merge-into-self",
                "body.customer_id: a profile cannot be merged into itself",
                field="body.customer_id",
            ),
        ),
    },
)
async def merge_customers(
    customer_id: uuid.UUID,
    body: MergeRequest,
    request: Request,
    session: SessionDep,
    principal: CustomersWrite,
    idem: IdempotencyDep,
) -> Response:
    """One person, two profiles: ``body.customer_id`` is absorbed into this one, in one
    transaction. Identities, conversations, messages, timeline, page views, proactive
    decisions and routing contacts move; per channel the most recent consent wins; this
    profile's attributes win over the absorbed one's. The absorbed profile stays
    readable, pointing here. The change record (``GET .../changes``) lists the identities
    that moved, so a split can undo the merge."""
    if (replay := await idem.replay()) is not None:
        return replay
    conn = await raw(session)
    moved = await merging.merge(
        conn, principal.scope, customer_id, body.customer_id, _actor(principal)
    )
    audit(
        request,
        "customer.merge",
        "customer",
        customer_id,
        absorbed_customer_id=str(body.customer_id),
        moved=moved.model_dump(mode="json"),
    )
    customer = await profiles.read(conn, principal.scope, customer_id)
    result = MergeResult(customer=customer, absorbed_customer_id=body.customer_id, moved=moved)
    return await idem.respond(200, result, headers={"ETag": etag(customer.version)})


@router.post(
    "/{customer_id}/split",
    status_code=status.HTTP_201_CREATED,
    response_model=SplitResult,
    summary="Split identities off into a new profile",
    responses={
        201: {"description": "The new profile", "headers": ETAG_HEADER},
        404: NOT_FOUND,
        409: problem("The profile was merged into another", MERGED),
        422: problem(
            "Identities that are not this profile's, or all of them",
            example(
                422,
                "identity-not-on-customer",
                "body.identity_ids.0: the customer has no such identity",
                field="body.identity_ids.0",
            ),
            example(
                422,
                "split-takes-all",
                "body.identity_ids: names every identity of the customer; at least one must stay",
                field="body.identity_ids",
            ),
        ),
    },
)
async def split_customer(
    customer_id: uuid.UUID,
    body: SplitRequest,
    request: Request,
    session: SessionDep,
    principal: CustomersWrite,
    idem: IdempotencyDep,
) -> Response:
    """Two people in one profile: a new profile takes the identities named, the
    conversations opened through them with their messages, the timeline of those
    conversations and identities, and their page views. Consent and attributes stay."""
    if (replay := await idem.replay()) is not None:
        return replay
    conn = await raw(session)
    new_id, moved = await merging.split(
        conn, principal.scope, customer_id, body.identity_ids, body.display_name, _actor(principal)
    )
    audit(
        request,
        "customer.split",
        "customer",
        customer_id,
        new_customer_id=str(new_id),
        moved=moved.model_dump(mode="json"),
    )
    customer = await profiles.read(conn, principal.scope, new_id)
    result = SplitResult(customer=customer, from_customer_id=customer_id, moved=moved)
    headers = {"ETag": etag(customer.version), "Location": f"/v1/customers/{new_id}"}
    return await idem.respond(201, result, headers=headers)


@router.get(
    "/{customer_id}/changes",
    response_model=ChangePage,
    summary="A customer's change record",
    responses={404: NOT_FOUND},
)
async def list_changes(
    customer_id: uuid.UUID,
    session: SessionDep,
    principal: CustomersRead,
    page: Annotated[PageParams, Depends(page_params)],
) -> Response:
    """Merges, splits and identities added or removed, newest first, with who did it."""
    conn = await raw(session)
    rows = await profiles.change_rows(conn, principal.scope, customer_id, page.limit, page.after_id)
    rows, next_cursor = page_rows(rows, page.limit, key=lambda r: r["id"])
    items = [
        ChangeRead.model_validate(dict(r) | {"detail": decode_json(r["detail"])}).model_dump(
            mode="json"
        )
        for r in rows
    ]
    return JSONResponse({"items": items, "next_cursor": next_cursor})


# ---------------------------------------------------------------------------- consent


@router.put(
    "/{customer_id}/consents/{channel}",
    response_model=ConsentRead,
    summary="Record a customer's consent on a channel",
    responses={
        404: NOT_FOUND,
        409: problem("The profile was merged into another", MERGED),
    },
)
async def put_consent(
    customer_id: uuid.UUID,
    channel: ConsentChannel,
    body: ConsentUpdate,
    request: Request,
    session: SessionDep,
    principal: CustomersWrite,
) -> Response:
    """Whether the tenant may contact the customer on the channel on its own
    initiative (proactive engagement checks it). A change of status goes on the
    timeline as ``consent.changed``."""
    conn = await raw(session)
    result = await profiles.set_consent(
        conn, principal.scope, customer_id, channel, body.status, body.source
    )
    if result.changed:
        audit(
            request,
            "customer.consent",
            "customer",
            customer_id,
            channel=channel,
            status=body.status,
            previous=result.previous,
            source=body.source,
        )
    return JSONResponse(result.consent.model_dump(mode="json"))


# ---------------------------------------------------------------------------- timeline


@router.get(
    "/{customer_id}/timeline",
    response_model=TimelinePage,
    summary="A customer's timeline across channels",
    responses={404: NOT_FOUND},
)
async def get_timeline(
    customer_id: uuid.UUID,
    session: SessionDep,
    principal: CustomersRead,
    limit: Annotated[int, Query(ge=1, le=200, description="Items per page")] = 50,
    cursor: Annotated[
        str | None,
        Query(pattern=timeline.CURSOR_PATTERN, description="next_cursor of the previous page"),
    ] = None,
    kinds: Annotated[
        str | None,
        Query(
            max_length=1000,
            description="Comma-separated kinds to keep (call,callback,message.received)",
        ),
    ] = None,
    after: Annotated[AwareDatetime | None, Query(description="Only items after this")] = None,
    before: Annotated[AwareDatetime | None, Query(description="Only items before this")] = None,
) -> Response:
    """Every interaction, oldest first: conversations opened, reopened, assigned and
    resolved, messages received and sent, notes, dispositions, page views, proactive
    decisions, consent changes, and the customer's calls and callbacks (routing contacts
    with ``customer_ref`` = this customer's id). A merged profile shows its survivor's."""
    conn = await raw(session)
    items, next_cursor = await timeline.page(
        conn,
        principal.scope,
        customer_id,
        limit=limit,
        cursor=cursor,
        kinds=timeline.parse_kinds(kinds),
        after=after,
        before=before,
    )
    return JSONResponse(
        {"items": [i.model_dump(mode="json") for i in items], "next_cursor": next_cursor}
    )
