"""Optimistic concurrency: ETag from a resource's version, If-Match on updates."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header

from app.core.errors import SwitchboardError


class PreconditionFailed(SwitchboardError):
    status, code, title = 412, "precondition-failed", "Precondition failed"


def etag(version: int) -> str:
    return f'"{version}"'


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
