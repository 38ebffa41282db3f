"""Turn constraint violations into the API's conflicts, without losing the transaction."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Conflict, SwitchboardError

T = TypeVar("T")


def constraint_of(exc: IntegrityError) -> str | None:
    orig = exc.orig
    cause = getattr(orig, "__cause__", None) or orig
    return getattr(cause, "constraint_name", None)


async def guarded(
    session: AsyncSession,
    action: Callable[[], Awaitable[T]],
    errors: dict[str, SwitchboardError],
    default: SwitchboardError | None = None,
) -> T:
    """Run ``action`` (which flushes) in a savepoint; a violated constraint named in
    ``errors`` raises that error, others raise ``default`` (or a generic conflict)."""
    try:
        async with session.begin_nested():
            return await action()
    except IntegrityError as exc:
        name = constraint_of(exc)
        if name in errors:
            raise errors[name] from exc
        raise (default or Conflict("The change conflicts with existing data.")) from exc
