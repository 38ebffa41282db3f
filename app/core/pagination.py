"""Cursor pagination over time-ordered UUID keys (newest first)."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

from app.core.errors import InvalidInput

T = TypeVar("T")
R = TypeVar("R")

# A cursor is a base64url UUID without padding: 16 bytes, 22 characters.
CURSOR_PATTERN = r"^[A-Za-z0-9_-]{22}$"


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


class PageParams(BaseModel):
    limit: int
    after_id: uuid.UUID | None


def encode_cursor(last_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(last_id.bytes).rstrip(b"=").decode()


def _row_id(row: Any) -> uuid.UUID:
    return row.id


def page_rows(
    rows: Sequence[R], limit: int, key: Callable[[R], uuid.UUID] = _row_id
) -> tuple[list[R], str | None]:
    """A repository's ``limit + 1`` rows (newest first) as this page's rows and the
    next page's cursor: None on the last page. ``key`` is what the cursor carries."""
    page = list(rows[:limit])
    return page, encode_cursor(key(page[-1])) if len(rows) > limit else None


def page_of(
    rows: Sequence[R],
    limit: int,
    to_read: Callable[[R], T],
    key: Callable[[R], uuid.UUID] = _row_id,
) -> Page[T]:
    """The page of a repository's ``limit + 1`` rows, each read with ``to_read``."""
    page, next_cursor = page_rows(rows, limit, key)
    return Page(items=[to_read(r) for r in page], next_cursor=next_cursor)


def _decode_cursor(cursor: str) -> uuid.UUID:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return uuid.UUID(bytes=raw)
    except (ValueError, TypeError) as exc:
        raise InvalidInput("cursor is not one this API issued", field="query.cursor") from exc


def page_params(
    limit: Annotated[int, Query(ge=1, le=200, description="Items per page")] = 50,
    cursor: Annotated[
        str | None,
        Query(pattern=CURSOR_PATTERN, description="next_cursor of the previous page"),
    ] = None,
) -> PageParams:
    return PageParams(limit=limit, after_id=_decode_cursor(cursor) if cursor else None)
