"""Who is on the other end of a widget request: a web chat channel of one tenant, seen
from an allowed page, and (once the session exists) one visitor of it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from app.conversations.service import ChannelRef
from app.customers.service import ResolvedIdentity
from app.db.tenant import TenantScope


@dataclass(frozen=True)
class WidgetChannel:
    scope: TenantScope
    plan: str
    channel: ChannelRef
    origin: str

    @property
    def tenant_id(self) -> uuid.UUID:
        return self.scope.tenant_id


@dataclass(frozen=True)
class Visitor:
    widget: WidgetChannel
    customer_id: uuid.UUID  # the identity's profile now (a merge may have moved it)
    identity_id: uuid.UUID
    visitor_id: str
    expires_at: int  # the token's expiry, Unix time

    @property
    def scope(self) -> TenantScope:
        return self.widget.scope

    @property
    def channel(self) -> ChannelRef:
        return self.widget.channel

    @property
    def plan(self) -> str:
        return self.widget.plan

    def identity(self) -> ResolvedIdentity:
        return ResolvedIdentity(
            self.customer_id, self.identity_id, False, "webchat", self.visitor_id
        )


@dataclass(frozen=True)
class VisitorHolding:
    """A visitor, and the conversation the request's path names when it is theirs:
    ``held`` is its id, locked (``FOR UPDATE``) for the rest of the request's
    transaction; None when it is not the visitor's (or there is none)."""

    visitor: Visitor
    held: uuid.UUID | None
