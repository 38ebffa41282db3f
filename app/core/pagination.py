"""Cursor pagination over time-ordered UUID keys (newest first)."""

from __future__ import annotations

import base64
import uuid
from typing import Annotated, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

from app.core.errors import InvalidInput

T = TypeVar("T")

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
