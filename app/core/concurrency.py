"""Optimistic concurrency: ETag from a resource's version, If-Match on updates."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from app.core.errors import SwitchboardError


class PreconditionFailed(SwitchboardError):
    status, code, title = 412, "precondition-failed", "Precondition failed"


def etag(version: int) -> str:
    return f'"{version}"'


def with_etag(body: BaseModel | dict[str, Any], version: int, status: int = 200) -> JSONResponse:
    """A JSON answer with the resource's version as its ETag."""
    content = body.model_dump(mode="json") if isinstance(body, BaseModel) else body
    return JSONResponse(content, status_code=status, headers={"ETag": etag(version)})


class IfMatch:
    def __init__(self, raw: str | None) -> None:
        self.raw = raw

    def check(self, current_version: int) -> None:
        """Raise 412 unless If-Match is absent, '*', or names the current version."""
        if self.raw is None:
            return
        tags = [t.strip() for t in self.raw.split(",")]
        if "*" in tags:
            return
        current = etag(current_version)
        if not any(t.removeprefix("W/") == current for t in tags):
            raise PreconditionFailed(
                f"The resource changed (now {current}); fetch it again and retry.",
                field="header.If-Match",
                current_etag=current,
            )


def _if_match(
    if_match: Annotated[
        str | None,
        Header(
            alias="If-Match",
            max_length=200,
            description="The ETag you last read; a stale one answers 412.",
        ),
    ] = None,
) -> IfMatch:
    return IfMatch(if_match)


IfMatchDep = Annotated[IfMatch, Depends(_if_match)]
