"""Abuse limits of the public widget API, per client address or per visitor, per
action (the counting itself: app/core/abuse.py)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.core.abuse import HOUR, MINUTE, Limit, address_bucket, hit, visitor_bucket
from app.webchat.visitor import Visitor

__all__ = ["Limit", "by_address", "by_visitor"]

Factory = async_sessionmaker[AsyncSession]


async def by_address(factory: Factory, address: str, limit: Limit) -> None:
    """Count one request from a client address (429 past the limit)."""
    await hit(factory, address_bucket(address, limit), limit)


async def by_visitor(factory: Factory, visitor: Visitor, limit: Limit) -> None:
    """Count one request of a visitor (429 past the limit)."""
    await hit(factory, visitor_bucket(visitor.scope.tenant_id, visitor.visitor_id, limit), limit)


def sessions(settings: Settings) -> Limit:
    return Limit("session", settings.widget_sessions_per_address_per_minute, MINUTE)


def streams(settings: Settings) -> Limit:
    return Limit("stream", settings.widget_ws_per_address_per_minute, MINUTE)


def messages(settings: Settings) -> Limit:
    return Limit("message", settings.widget_messages_per_visitor_per_minute, MINUTE)


def page_views(settings: Settings) -> Limit:
    return Limit("page_view", settings.widget_page_views_per_visitor_per_minute, MINUTE)


def conversations(settings: Settings) -> Limit:
    return Limit("conversation", settings.widget_conversations_per_visitor_per_hour, HOUR)


def uploads(settings: Settings) -> Limit:
    return Limit("upload", settings.widget_uploads_per_visitor_per_hour, HOUR)
