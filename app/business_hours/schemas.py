from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from app.business_hours.schedule import DAYS, check_timezone, overlap_index, parse_hhmm
from app.core.schemas import Name, StrictBool
from app.core.validation import fail_at, patch_schema, reject_nulls


def _open_time(v: str) -> str:
    parse_hhmm(v)
    return v


def _close_time(v: str) -> str:
    parse_hhmm(v, allow_24=True)
    return v


OpenTime = Annotated[
    str,
    Field(max_length=5, json_schema_extra={"pattern": r"^([01]\d|2[0-3]):[0-5]\d$"}),
    AfterValidator(_open_time),
]
CloseTime = Annotated[
    str,
    Field(max_length=5, json_schema_extra={"pattern": r"^(([01]\d|2[0-3]):[0-5]\d|24:00)$"}),
    AfterValidator(_close_time),
]


def _open_before_close(v: tuple[str, str]) -> tuple[str, str]:
    if parse_hhmm(v[0]) >= parse_hhmm(v[1], allow_24=True):
        raise ValueError("must open before it closes (use 24:00 for midnight)")
    return v


# ["09:00", "17:00"]: open at 09:00, closed from 17:00. Local wall-clock time.
Interval = Annotated[
    tuple[OpenTime, CloseTime],
    AfterValidator(_open_before_close),
    Field(description='[open, close) as "HH:MM" local time; close may be "24:00"'),
]


def _minutes(iv: tuple[str, str]) -> tuple[int, int]:
    return parse_hhmm(iv[0]), parse_hhmm(iv[1], allow_24=True)


def _no_overlaps(v: list[tuple[str, str]]) -> list[tuple[str, str]]:
    bad = overlap_index(_minutes(iv) for iv in v)
    if bad is not None:
        fail_at((bad,), "overlaps an earlier interval of the same day", list(v[bad]))
    return sorted(v, key=_minutes)


DayHours = Annotated[
    list[Interval],
    Field(max_length=24, description="Open intervals of the day; empty means closed."),
    AfterValidator(_no_overlaps),
]


class WeeklyHours(BaseModel):
    """Per weekday, the open intervals; a missing or empty day is closed."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "mon": [["09:00", "12:30"], ["13:30", "17:00"]],
                    "fri": [["09:00", "24:00"]],
                    "sat": [["00:00", "02:00"]],
                }
            ]
        },
    )

    mon: DayHours = []
    tue: DayHours = []
    wed: DayHours = []
    thu: DayHours = []
    fri: DayHours = []
    sat: DayHours = []
    sun: DayHours = []


class DatedHours(BaseModel):
    """A holiday or other dated exception: closed all day, or open only at ``open``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"date": "2026-12-25", "name": "Christmas Day", "closed": True},
                {"date": "2026-12-24", "name": "Christmas Eve", "open": [["09:00", "13:00"]]},
            ]
        },
    )

    date: date
    name: Name | None = None
    closed: StrictBool = False
    open: DayHours = []

    @model_validator(mode="after")
    def _closed_or_open(self) -> DatedHours:
        if self.closed and self.open:
            fail_at(("open",), "must be empty when closed is true")
        if not self.closed and not self.open:
            fail_at(("open",), "must list the open intervals, or set closed to true")
        return self


def _unique_dates(v: list[DatedHours]) -> list[DatedHours]:
    seen: dict[date, int] = {}
    for i, exc in enumerate(v):
        if exc.date in seen:
            fail_at(
                (i, "date"),
                f"duplicates exceptions.{seen[exc.date]} (one entry per date)",
                exc.date,
            )
        seen[exc.date] = i
    return sorted(v, key=lambda e: e.date)


Exceptions = Annotated[
    list[DatedHours],
    Field(max_length=500, description="Dated exceptions; each replaces its weekday's hours."),
    AfterValidator(_unique_dates),
]
Timezone = Annotated[
    str,
    Field(min_length=1, max_length=64, description="IANA time zone, e.g. America/New_York"),
    AfterValidator(check_timezone),
]

_EXAMPLE: dict[str, Any] = {
    "name": "US support hours",
    "timezone": "America/New_York",
    "weekly": {d: [["09:00", "17:00"]] for d in DAYS[:5]},
    "exceptions": [
        {"date": "2026-12-25", "name": "Christmas Day", "closed": True},
        {"date": "2026-12-24", "name": "Christmas Eve", "open": [["09:00", "13:00"]]},
    ],
}


class BusinessHoursCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_EXAMPLE]})

    name: Name
    timezone: Timezone
    weekly: WeeklyHours
    exceptions: Exceptions = []


_NOT_NULL = ("name", "timezone", "weekly", "exceptions")


class BusinessHoursUpdate(BaseModel):
    """Fields given replace the stored ones whole (weekly and exceptions included)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra=patch_schema(
            _NOT_NULL,
            [
                {
                    "weekly": {"sat": [["10:00", "14:00"]]}
                    | {d: [["08:00", "18:00"]] for d in DAYS[:5]}
                }
            ],
        ),
    )

    name: Name | None = None
    timezone: Timezone | None = None
    weekly: WeeklyHours | None = None
    exceptions: Exceptions | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        return reject_nulls(data, _NOT_NULL)


class BusinessHoursRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                _EXAMPLE
                | {
                    "id": "019a2b7c-0000-7000-8000-000000000001",
                    "version": 1,
                    "created_at": "2026-11-24T10:00:00Z",
                    "updated_at": "2026-11-24T10:00:00Z",
                }
            ]
        }
    )

    id: uuid.UUID
    name: str
    timezone: str
    weekly: WeeklyHours
    exceptions: list[DatedHours]
    version: int
    created_at: datetime
    updated_at: datetime


class BusinessHoursStatus(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "open": True,
                    "until": "2026-11-24T22:00:00Z",
                    "timezone": "America/New_York",
                    "local_time": "2026-11-24T10:30:00-05:00",
                }
            ]
        }
    )

    open: bool
    until: datetime | None = Field(
        description="The next change (closing if open, opening if closed), in UTC; "
        "null if none within 400 days."
    )
    timezone: str
    local_time: datetime = Field(description="The instant asked about, on the local clock.")
