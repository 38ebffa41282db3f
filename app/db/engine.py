"""Async engines and the request-scoped transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)


def to_asyncpg_url(url: str) -> str:
    u = make_url(url)
    return u.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def create_engine(url: str, *, pool_size: int = 10, max_overflow: int = 10) -> AsyncEngine:
    return create_async_engine(
        to_asyncpg_url(url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=False,
        pool_recycle=1800,
        # Each checkout starts clean: a transaction-local app.tenant_id dies with its
        # transaction, and "reset on return" rolls back anything left open.
        pool_reset_on_return="rollback",
    )


def make_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=True)


async def _request_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed before the response, rolled back on error.

    Audit events queued on the request are written inside the same transaction, and
    after-commit hooks (outbound mail) run only once the commit succeeded.
    """
    from app.audit.service import flush_request_audit
    from app.core.errors import SwitchboardError

    factory: async_sessionmaker[AsyncSession] = request.app.state.session_factory
    async with factory() as session:
        await session.begin()
        try:
            yield session
            await flush_request_audit(session, request)
        except SwitchboardError as exc:
            # Most refusals change nothing; a few must keep what they recorded (a failed
            # login, a revoked token family) while still answering with an error.
            if exc.keep_changes:
                await session.commit()
            else:
                await session.rollback()
            raise
        except BaseException:
            await session.rollback()
            raise
        await session.commit()
        await run_after_commit(session)


SessionDep = Annotated[AsyncSession, Depends(_request_session, scope="function")]


def after_commit(session: AsyncSession, hook: object) -> None:
    """Run ``hook`` (an async callable) once the request's transaction has committed."""
    session.info.setdefault("after_commit", []).append(hook)


async def run_after_commit(session: AsyncSession) -> None:
    """Run the hooks queued with :func:`after_commit`; call it once the transaction has
    committed (the request dependency does; so must code that owns its transaction)."""
    for hook in session.info.pop("after_commit", []):
        await hook()
