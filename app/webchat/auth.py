"""Widget authentication.

``POST /v1/widget/sessions`` takes the channel's public widget key (``X-Widget-Key``,
never in the URL) and the page's ``Origin``, which must be one of the channel's allowed
origins; it answers a visitor token (app/webchat/tokens.py) binding tenant, channel,
customer, identity and visitor id. Every other widget call sends that token as
``Authorization: Bearer`` from an allowed origin (:data:`VisitorDep`).

An unknown key and a disabled channel get the same 404 (a key says nothing about what
it was). A request from another origin, or with none, gets 403 ``origin-not-allowed``.
The origin check is what a browser enforces for the tenant's site; scripts can send any
Origin, which is why the abuse limits (app/webchat/limits.py) stand behind it.
"""

from __future__ import annotations

import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import Annotated

import asyncpg
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection

from app.channels import repository as channel_repo
from app.channels.service import WIDGET_KEY
from app.config import Settings
from app.conversations.service import ChannelRef
from app.core.errors import Forbidden, NotFound, Unauthorized
from app.core.telemetry import tag_tenant
from app.customers.service import resolve_identity
from app.db.engine import SessionDep
from app.db.tenant import TenantScope, bind_tenant, mint_scope
from app.routing.connection import raw
from app.routing.snapshots import decode_json
from app.tenants.models import TenantStatus
from app.webchat import service
from app.webchat.origins import browser_origin, origin_allowed
from app.webchat.schemas import SessionCreate, SessionRead, WidgetConfig
from app.webchat.tokens import VisitorClaims, visitor_tokens
from app.webchat.visitor import Visitor, VisitorHolding, WidgetChannel

CORS_STATE = "widget_cors_origin"  # request.state: the origin the response may name

widget_key_header = APIKeyHeader(
    name="X-Widget-Key",
    auto_error=False,
    scheme_name="WidgetKey",
    description="The web chat channel's public widget key.",
)
visitor_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="VisitorToken",
    description="The visitor token from POST /v1/widget/sessions.",
)


def widget_not_found() -> NotFound:
    return NotFound("No such widget, or it is disabled.", code="widget-not-found")


def origin_not_allowed() -> Forbidden:
    return Forbidden(
        "This page's origin may not use this widget.",
        code="origin-not-allowed",
        field="header.Origin",
    )


def invalid_token() -> Unauthorized:
    return Unauthorized(
        "The visitor token is invalid or expired; start a new session.",
        code="invalid-visitor-token",
    )


def allowed_origins(channel: ChannelRef) -> list[str]:
    return [str(o) for o in channel.config.get("allowed_origins") or []]


# The tenant's status and plan and the channel, in one round trip after the tenant is
# bound (channels are behind row-level security; tenants is a platform table).
_WIDGET = (
    "SELECT t.status, t.plan, ch.type, ch.enabled, ch.config FROM tenants t "
    "LEFT JOIN channels ch ON ch.tenant_id = t.id AND ch.id = $2 WHERE t.id = $1"
)
# The same and the token's visitor: the profile its identity belongs to now and, when
# the request names a conversation ($5), that conversation if it is the visitor's,
# locked for the rest of the transaction (see :func:`current_visitor_holding`).
_VISITOR = """
SELECT t.status, t.plan, ch.type, ch.enabled, ch.config, i.customer_id, cv.id AS held
  FROM tenants t
  LEFT JOIN channels ch ON ch.tenant_id = t.id AND ch.id = $2
  LEFT JOIN customer_identities i ON i.tenant_id = t.id AND i.id = $3
       AND i.kind = 'webchat' AND i.value = $4
  LEFT JOIN LATERAL (
    SELECT id FROM conversations
     WHERE tenant_id = $1 AND id = $5 AND customer_id = i.customer_id AND identity_id = $3
       FOR UPDATE
  ) AS cv ON true
 WHERE t.id = $1
"""
_CONVERSATION_ID: TypeAdapter[uuid.UUID] = TypeAdapter(uuid.UUID)


def _check_tenant_status(status: str) -> None:
    """app/auth/principal.py ``check_tenant_status`` for a status read with the widget."""
    if status == TenantStatus.suspended:
        raise Forbidden("This tenant is suspended.", code="tenant-suspended")
    if status == TenantStatus.closed:
        raise Forbidden("This tenant is closed.", code="tenant-closed")


def _widget_of(
    row: asyncpg.Record | None,
    scope: TenantScope,
    channel_id: uuid.UUID,
    origin_header: str | None,
    http: HTTPConnection | None,
) -> WidgetChannel:
    """The checks in their order: 404 (no tenant, no such enabled web chat channel),
    403 (origin), 403 (tenant status)."""
    if row is None or row["type"] != "webchat" or not row["enabled"]:
        raise widget_not_found()
    ref = ChannelRef(channel_id, row["type"], dict(decode_json(row["config"]) or {}))
    origin = browser_origin(origin_header)
    if origin is None or not origin_allowed(origin, allowed_origins(ref)):
        raise origin_not_allowed()
    if http is not None:
        setattr(http.state, CORS_STATE, origin)
    _check_tenant_status(row["status"])
    tag_tenant(scope.tenant_id)
    return WidgetChannel(scope=scope, plan=row["plan"], channel=ref, origin=origin)


async def load_widget(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    channel_id: uuid.UUID,
    origin_header: str | None,
    http: HTTPConnection | None = None,
) -> WidgetChannel:
    """The tenant's enabled web chat channel seen from an allowed origin (the tenant
    bound to the session), else 404 / 403."""
    scope = mint_scope(tenant_id)
    await bind_tenant(session, scope)
    row = await (await raw(session)).fetchrow(_WIDGET, tenant_id, channel_id)
    return _widget_of(row, scope, channel_id, origin_header, http)


async def _identity_customer(
    conn: asyncpg.Connection, widget: WidgetChannel, claims: VisitorClaims
) -> uuid.UUID | None:
    """The profile the token's visitor identity belongs to now, or None if it is gone."""
    customer: uuid.UUID | None = await conn.fetchval(
        "SELECT customer_id FROM customer_identities WHERE tenant_id = $1 AND id = $2 "
        "AND kind = 'webchat' AND value = $3",
        widget.tenant_id,
        claims.identity_id,
        claims.visitor_id,
    )
    return customer


async def _authenticate(
    http: HTTPConnection,
    session: AsyncSession,
    token: str,
    conversation_id: uuid.UUID | None = None,
) -> tuple[Visitor, uuid.UUID | None]:
    """The visitor a token names and, with ``conversation_id``, that conversation's id
    when it is theirs (then locked), else None. Binds the tenant, then one query."""
    settings: Settings = http.app.state.settings
    claims = visitor_tokens(http.app.state, settings).verify(token)
    if claims is None:
        raise invalid_token()
    scope = mint_scope(claims.tenant_id)
    await bind_tenant(session, scope)
    row = await (await raw(session)).fetchrow(
        _VISITOR,
        claims.tenant_id,
        claims.channel_id,
        claims.identity_id,
        claims.visitor_id,
        conversation_id,
    )
    widget = _widget_of(row, scope, claims.channel_id, http.headers.get("origin"), http)
    if claims.expired() or row is None or row["customer_id"] is None:
        raise invalid_token()
    visitor = Visitor(
        widget, row["customer_id"], claims.identity_id, claims.visitor_id, claims.expires_at
    )
    return visitor, row["held"]


async def visitor_from_token(http: HTTPConnection, session: AsyncSession, token: str) -> Visitor:
    """The visitor a token names, seen from an allowed origin: 401 for a token that is
    not ours, expired, or whose visitor is gone; 404 / 403 as for sessions."""
    visitor, _ = await _authenticate(http, session, token)
    return visitor


def _bearer(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized(
            "Send 'Authorization: Bearer <visitor token>' from POST /v1/widget/sessions.",
            code="visitor-token-required",
        )
    return credentials.credentials


async def current_visitor(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(visitor_bearer)],
) -> Visitor:
    return await visitor_from_token(request, session, _bearer(credentials))


async def current_visitor_holding(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(visitor_bearer)],
) -> VisitorHolding:
    """:func:`current_visitor`, and the conversation the path names locked when it is
    the visitor's, in the same query. Taken before anything reads the conversation's
    messages, the lock lets a later statement (a new snapshot) see what the previous
    holder wrote: two resends of one message queue here, the second finds the first.
    The path's id is read as FastAPI will validate it (a malformed one holds nothing and
    gets its 422 after authentication, as on the other routes)."""
    token = _bearer(credentials)
    try:
        conversation_id = _CONVERSATION_ID.validate_python(request.path_params["conversation_id"])
    except (KeyError, ValidationError):
        conversation_id = None
    visitor, held = await _authenticate(request, session, token, conversation_id)
    return VisitorHolding(visitor, held)


VisitorDep = Annotated[Visitor, Depends(current_visitor)]
VisitorHoldingDep = Annotated[VisitorHolding, Depends(current_visitor_holding)]


def new_visitor_id() -> str:
    return "v_" + secrets.token_urlsafe(16)  # 22 url-safe characters after the prefix


async def open_session(
    request: Request, session: AsyncSession, key: str | None, body: SessionCreate
) -> SessionRead:
    """See the module docstring: the widget's session for this browser."""
    if not key:
        raise Unauthorized(
            "Send the channel's widget key in the X-Widget-Key header.",
            code="widget-key-required",
            field="header.X-Widget-Key",
        )
    settings: Settings = request.app.state.settings
    found = await channel_repo.resolve_address(session, WIDGET_KEY, key.strip()[:100])
    if found is None:
        raise widget_not_found()
    widget = await load_widget(session, found[0], found[1], request.headers.get("origin"), request)
    tokens = visitor_tokens(request.app.state, settings)
    now = int(time.time())
    conn = await raw(session)
    resumed = None
    claims = tokens.verify(body.visitor_token) if body.visitor_token else None
    horizon = settings.widget_visitor_resume_days * 86400
    if (
        claims is not None
        and claims.tenant_id == widget.tenant_id
        and claims.channel_id == widget.channel.id
        and claims.expires_at + horizon > now
    ):
        customer = await _identity_customer(conn, widget, claims)
        if customer is not None:
            resumed = (customer, claims.identity_id, claims.visitor_id)
    if resumed is None:
        visitor_id = new_visitor_id()
        who = await resolve_identity(session, widget.scope, "webchat", visitor_id)
        customer_id, identity_id = who.customer_id, who.identity_id
    else:
        customer_id, identity_id, visitor_id = resumed
    expires_at = now + settings.widget_token_ttl_seconds
    token = tokens.issue(
        VisitorClaims(
            tenant_id=widget.tenant_id,
            channel_id=widget.channel.id,
            customer_id=customer_id,
            identity_id=identity_id,
            visitor_id=visitor_id,
            issued_at=now,
            expires_at=expires_at,
        )
    )
    visitor = Visitor(widget, customer_id, identity_id, visitor_id, expires_at)
    row = await service.latest_open(conn, visitor)
    conversation = await service.conversation_view(conn, widget.scope, row) if row else None
    config = widget.channel.config
    return SessionRead(
        visitor_token=token,
        visitor_id=visitor_id,
        expires_at=datetime.fromtimestamp(expires_at, UTC),
        resumed=resumed is not None,
        widget=WidgetConfig(greeting=config.get("greeting"), theme=config.get("theme")),
        conversation=conversation,
    )
