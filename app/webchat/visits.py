"""What the visitor tells us besides chat: their name and email (the pre-chat form),
the pages they see (context for agents, input for proactive rules), and their answer
to a proactive invitation or callback offer."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Conflict, InvalidInput, NotFound
from app.customers.profiles import Actor, add_identity
from app.customers.profiles import not_found as customer_not_found
from app.customers.service import add_timeline, normalize_identity
from app.db.base import utcnow, uuid7
from app.routing.connection import raw
from app.routing.contacts import position_and_wait
from app.routing.snapshots import decode_json
from app.routing.transitions import dumps
from app.storage.base import ObjectStore
from app.webchat import service
from app.webchat.origins import origin_allowed, origin_of_url
from app.webchat.schemas import (
    CallbackRequested,
    EmailOutcome,
    Identified,
    IdentifyBody,
    InvitationAccepted,
    InvitationRead,
    PageViewCreate,
    PageViewRecorded,
)
from app.webchat.visitor import Visitor

# A view more than this after the previous one starts a new visit: the previous page's
# dwell time is unknown (the visitor left), not hours long.
VISIT_GAP = timedelta(minutes=30)
# An invitation not taken up within this long has lapsed.
INVITATION_TTL = timedelta(hours=1)


# -- pre-chat form ------------------------------------------------------------------------


async def identify(conn: asyncpg.Connection, visitor: Visitor, body: IdentifyBody) -> Identified:
    """Name the visitor and, when given, link their email address. An address no one
    has becomes one of the profile's (unverified) identities; one that belongs to
    another profile is never merged on the visitor's word (anyone can type any
    address): it is kept as an unverified claim (``attributes.claimed_email``)."""
    if body.name is None and body.email is None:
        raise InvalidInput("body: give name, email or both", field="body")
    scope = visitor.scope
    now = utcnow()
    row = await conn.fetchrow(
        "SELECT display_name FROM customers WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
        scope.tenant_id,
        visitor.customer_id,
    )
    if row is None:
        raise customer_not_found()
    name = row["display_name"]
    if body.name is not None:
        name = body.name
        await conn.execute(
            "UPDATE customers SET display_name = $3, updated_at = $4, version = version + 1 "
            "WHERE tenant_id = $1 AND id = $2",
            scope.tenant_id,
            visitor.customer_id,
            name,
            now,
        )
    outcome = None
    if body.email is not None:
        address = normalize_identity("email", body.email, field="body.email")
        holder = await conn.fetchval(
            "SELECT customer_id FROM customer_identities WHERE tenant_id = $1 "
            "AND kind = 'email' AND value = $2",
            scope.tenant_id,
            address,
        )
        if holder is None or holder == visitor.customer_id:
            added = await add_identity(
                conn,
                scope,
                visitor.customer_id,
                "email",
                address,
                False,
                Actor("visitor", visitor.visitor_id),
            )
            outcome = EmailOutcome(
                address=address,
                status="added" if added.created else "already_linked",
                detail="The address is linked to this visitor (unverified)."
                if added.created
                else "The address was already linked to this visitor.",
            )
        else:
            await conn.execute(
                "UPDATE customers SET attributes = attributes || $3::jsonb, updated_at = $4, "
                "version = version + 1 WHERE tenant_id = $1 AND id = $2",
                scope.tenant_id,
                visitor.customer_id,
                dumps({"claimed_email": address}),
                now,
            )
            outcome = EmailOutcome(
                address=address,
                status="claimed",
                detail="The address is kept as an unverified claim; an agent can confirm it.",
            )
    return Identified(display_name=name, email=outcome)


# -- page views ---------------------------------------------------------------------------


async def record_page_view(
    session: AsyncSession, visitor: Visitor, allowed: list[str], body: PageViewCreate
) -> PageViewRecorded:
    """Store the view (and the previous page's dwell time), put it on the timeline, and
    ask the proactive rules whether to invite the visitor."""
    from app.proactive.service import evaluate_visit

    origin = origin_of_url(body.url)
    if origin is None:
        raise InvalidInput("body.url: not an absolute http(s) URL", field="body.url")
    if not origin_allowed(origin, allowed):
        raise InvalidInput(
            "body.url: the page is not on one of the widget's allowed origins",
            code="url-origin-not-allowed",
            field="body.url",
        )
    conn = await raw(session)
    scope = visitor.scope
    now = utcnow()
    previous = await conn.fetchrow(
        "SELECT id, at FROM page_views WHERE tenant_id = $1 AND customer_id = $2 "
        "AND identity_id = $3 AND channel_id = $4 ORDER BY at DESC LIMIT 1 FOR UPDATE",
        scope.tenant_id,
        visitor.customer_id,
        visitor.identity_id,
        visitor.channel.id,
    )
    if previous is not None and now - previous["at"] <= VISIT_GAP:
        await conn.execute(
            "UPDATE page_views SET dwell_seconds = $3 WHERE tenant_id = $1 AND id = $2 "
            "AND dwell_seconds IS NULL",
            scope.tenant_id,
            previous["id"],
            round((now - previous["at"]).total_seconds(), 3),
        )
    view_id = uuid7()
    await conn.execute(
        "INSERT INTO page_views (tenant_id, id, customer_id, identity_id, channel_id, url, "
        "title, referrer, at, attributes) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, "
        "$10::jsonb)",
        scope.tenant_id,
        view_id,
        visitor.customer_id,
        visitor.identity_id,
        visitor.channel.id,
        body.url,
        body.title,
        body.referrer,
        now,
        dumps(body.attributes),
    )
    await add_timeline(
        conn,
        scope,
        customer_id=visitor.customer_id,
        identity_id=visitor.identity_id,
        kind="page.viewed",
        at=now,
        channel="webchat",
        ref_id=view_id,
        summary={"url": body.url, "title": body.title},
    )
    invitation = await evaluate_visit(
        session,
        scope,
        customer_id=visitor.customer_id,
        identity_id=visitor.identity_id,
        channel_id=visitor.channel.id,
        page_view_id=view_id,
    )
    return PageViewRecorded(
        page_view_id=view_id,
        invitation=InvitationRead(
            decision_id=invitation.decision_id,
            rule_id=invitation.rule_id,
            action=invitation.action,  # type: ignore[arg-type]
            message=invitation.message,
        )
        if invitation is not None
        else None,
    )


# -- proactive answers --------------------------------------------------------------------


def _invitation_not_found() -> NotFound:
    return NotFound("No such invitation for this visitor.", code="invitation-not-found")


async def accept_invitation(
    session: AsyncSession,
    visitor: Visitor,
    store: ObjectStore,
    decision_id: uuid.UUID,
    text: str | None,
    before_open: Callable[[], Awaitable[None]],
) -> tuple[InvitationAccepted, bool]:
    """The visitor took up a chat invitation: the chat opens (or their open one goes
    on), marked ``attributes.invited_by_rule``, and is routed like any other. With
    ``text`` it starts with that message. Accepting twice answers the same chat."""
    conn = await raw(session)
    scope = visitor.scope
    decision = await conn.fetchrow(
        "SELECT rule_id, detail, at FROM proactive_decisions WHERE tenant_id = $1 AND id = $2 "
        "AND customer_id = $3 AND decision = 'contact'",
        scope.tenant_id,
        decision_id,
        visitor.customer_id,
    )
    detail = decode_json(decision["detail"]) if decision is not None else {}
    if decision is None or detail.get("identity_id") != str(visitor.identity_id):
        raise _invitation_not_found()
    if detail.get("action") != "invite_chat":
        raise Conflict(
            "This invitation offers a callback; ask for it with POST /v1/widget/callbacks.",
            code="not-a-chat-invitation",
            field="path.decision_id",
        )
    attributes = {"invited_by_rule": str(decision["rule_id"]), "invitation_id": str(decision_id)}
    taken = await conn.fetchrow(
        "SELECT id FROM conversations WHERE tenant_id = $1 AND customer_id = $2 "
        "AND identity_id = $3 AND attributes->>'invitation_id' = $4",
        scope.tenant_id,
        visitor.customer_id,
        visitor.identity_id,
        str(decision_id),
    )
    if taken is None and utcnow() - decision["at"] > INVITATION_TTL:
        raise Conflict("The invitation has lapsed.", code="invitation-expired")
    if text:
        started, opened = await service.start_chat(
            session,
            visitor,
            store,
            text=text,
            client_message_id=None,
            attachment_ids=[],
            before_open=before_open,
            attributes=attributes,
        )
        return InvitationAccepted(conversation=started.conversation, message=started.message), (
            opened
        )
    row = (
        await service.owned(conn, visitor, taken["id"])
        if taken is not None
        else await service.latest_open(conn, visitor)
    )
    opened = row is None
    if row is None:
        row = await _open_invited(session, visitor, attributes, before_open)
    view = await service.conversation_view(conn, scope, row)
    return InvitationAccepted(conversation=view, message=None), opened


async def _open_invited(
    session: AsyncSession,
    visitor: Visitor,
    attributes: dict[str, str],
    before_open: Callable[[], Awaitable[None]],
) -> asyncpg.Record:
    """A chat with no message yet (the visitor clicked "Chat now"): opened and routed,
    so an agent greets them."""
    from app.conversations.service import open_conversation, route

    conn = await raw(session)
    await conn.execute(
        "SELECT 1 FROM customer_identities WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
        visitor.scope.tenant_id,
        visitor.identity_id,
    )
    await before_open()
    now = utcnow()
    opened = await open_conversation(
        conn,
        visitor.scope,
        channel=visitor.channel,
        identity=visitor.identity(),
        subject=None,
        at=now,
        attributes=attributes,
    )
    await route(
        session,
        visitor.scope,
        visitor.plan,
        conversation_id=opened["id"],
        channel=visitor.channel,
        at=now,
    )
    return await service.owned(conn, visitor, opened["id"])


async def request_callback(
    session: AsyncSession, visitor: Visitor, phone: str, decision_id: uuid.UUID | None
) -> CallbackRequested:
    """The visitor took up a callback offer: a voice callback waits in line for them."""
    from app.proactive.service import request_callback as enqueue_callback

    contact_id = await enqueue_callback(
        session,
        visitor.scope,
        visitor.plan,
        customer_id=visitor.customer_id,
        identity_id=visitor.identity_id,
        phone=phone,
        channel_id=visitor.channel.id,
        decision_id=decision_id,
    )
    conn = await raw(session)
    contact = await conn.fetchrow(
        "SELECT state, queue_id, priority, enqueued_at FROM contacts "
        "WHERE tenant_id = $1 AND id = $2",
        visitor.scope.tenant_id,
        contact_id,
    )
    position, wait = (
        await position_and_wait(conn, visitor.scope, contact)
        if contact
        else (
            None,
            None,
        )
    )
    return CallbackRequested(callback_id=contact_id, position=position, estimated_wait_seconds=wait)
