"""Login throttling per account and per client address (sliding window in PostgreSQL,
so every API replica sees the same counts)."""

from __future__ import annotations

import math
from datetime import timedelta

from sqlalchemy import delete, func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.auth.models import LoginFailure
from app.config import Settings
from app.core.errors import TooManyRequests
from app.db.base import utcnow


async def check(session: AsyncSession, settings: Settings, account: str, address: str) -> None:
    window_start = utcnow() - timedelta(seconds=settings.login_window_seconds)
    for kind, key, limit in (
        ("account", account, settings.login_max_failures_per_account),
        ("address", address, settings.login_max_failures_per_address),
    ):
        stmt = select(func.count(), func.min(LoginFailure.occurred_at)).where(
            LoginFailure.kind == kind,
            LoginFailure.key == key,
            LoginFailure.occurred_at > window_start,
        )
        count, oldest = (await session.execute(stmt)).one()
        if count >= limit:
            retry = settings.login_window_seconds - (utcnow() - oldest).total_seconds()
            retry_after = max(1, math.ceil(retry))
            raise TooManyRequests(
                f"Too many failed logins for this {kind}; try again in {retry_after} s.",
                code="login-throttled",
                headers={"Retry-After": str(retry_after)},
                retry_after=retry_after,
            )


async def record_failure(
    session: AsyncSession, settings: Settings, account: str, address: str
) -> None:
    """Recorded in the request's transaction, which the refusal commits (keep_changes)."""
    session.add(LoginFailure(kind="account", key=account))
    session.add(LoginFailure(kind="address", key=address))
    # Keep the table small: forget failures older than the window.
    horizon = utcnow() - timedelta(seconds=settings.login_window_seconds)
    await session.execute(delete(LoginFailure).where(col(LoginFailure.occurred_at) < horizon))


async def clear_account(session: AsyncSession, account: str) -> None:
    await session.execute(
        delete(LoginFailure).where(
            col(LoginFailure.kind) == "account", col(LoginFailure.key) == account
        )
    )
