"""Opening-hours arithmetic: is a schedule open at an instant, and until when.

Pure functions, no database. A schedule is a weekly pattern of local wall-clock
intervals plus dated exceptions, in one IANA time zone. Intervals are half-open
``[open, close)`` in minutes since local midnight; ``close`` may be 1440 ("24:00").

How wall-clock times become instants, across daylight-saving changes:

- A time the clock shows once is that instant.
- A time the clock shows twice (the repeated hour when clocks go back) is its *first*
  occurrence: staff close when the clock first reads the closing time.
- A time the clock skips (the lost hour when clocks go forward) is the instant of the
  jump: the first moment the clock reads that time or later. An interval lying wholly
  inside the lost hour is therefore never open.

Each interval is one contiguous open period between its two instants. Periods that
touch or overlap (``17:00-24:00`` then ``00:00-02:00`` the next day) merge into one, so
"open until" names the real next change.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

DAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # date.weekday()
MINUTES_PER_DAY = 1440
# How far ahead "until" looks for the next change; beyond it, "until" is null.
HORIZON_DAYS = 400

Interval = tuple[int, int]  # minutes since local midnight, [open, close)

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def parse_hhmm(value: str, *, allow_24: bool = False) -> int:
    """'HH:MM' to minutes since midnight; '24:00' only when ``allow_24`` (a close)."""
    if allow_24 and value == "24:00":
        return MINUTES_PER_DAY
    m = _HHMM.match(value)
    if m is None:
        raise ValueError(
            "must be a time 'HH:MM' from 00:00 to 23:59" + (" or 24:00" if allow_24 else "")
        )
    return int(m.group(1)) * 60 + int(m.group(2))


def format_hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def overlap_index(intervals: Iterable[Interval]) -> int | None:
    """The index of the first interval that overlaps an earlier one, or None.

    Intervals that only touch (09:00-12:00, 12:00-17:00) do not overlap.
    """
    seen: list[Interval] = []
    for i, (o, c) in enumerate(intervals):
        if any(o < sc and so < c for so, sc in seen):
            return i
        seen.append((o, c))
    return None


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def check_timezone(name: str) -> str:
    """``name`` if it is an IANA time zone this system knows; ValueError otherwise."""
    if name in _zones():
        return name
    hint = next((z for z in sorted(_zones()) if z.lower() == name.lower()), None)
    raise ValueError(
        f"unknown IANA time zone '{name}'"
        + (f" (did you mean '{hint}'?)" if hint else " (for example 'Europe/London')")
    )


@dataclass(frozen=True)
class Schedule:
    timezone: str
    weekly: tuple[tuple[Interval, ...], ...]  # seven days, Monday first
    exceptions: Mapping[date, tuple[Interval, ...]] = field(default_factory=dict)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def intervals_on(self, day: date) -> tuple[Interval, ...]:
        """A dated exception replaces that day's weekly hours (empty = closed)."""
        found = self.exceptions.get(day)
        return found if found is not None else self.weekly[day.weekday()]


def schedule_from_json(
    timezone: str, weekly: Mapping[str, list[list[str]]], exceptions: list[dict[str, object]]
) -> Schedule:
    """Build from the stored form: weekly {"mon": [["09:00", "17:00"]], ...} and
    exceptions [{"date": "2026-12-25", "closed": true, "open": []}, ...]."""

    def intervals(pairs: Iterable[Iterable[str]]) -> tuple[Interval, ...]:
        out = []
        for pair in pairs:
            o, c = list(pair)
            out.append((parse_hhmm(o), parse_hhmm(c, allow_24=True)))
        return tuple(sorted(out))

    days = tuple(intervals(weekly.get(d, [])) for d in DAYS)
    dated: dict[date, tuple[Interval, ...]] = {}
    for exc in exceptions:
        day = date.fromisoformat(str(exc["date"]))
        opens = exc.get("open") or []
        dated[day] = () if exc.get("closed") else intervals(opens)  # type: ignore[arg-type]
    return Schedule(timezone, days, dated)


def wall_to_instant(tz: ZoneInfo, wall: datetime) -> datetime:
    """The first UTC instant at which the local clock in ``tz`` reads ``wall`` or later.

    ``wall`` is naive local time. See the module docstring for the DST rules.
    """
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == wall:
        return first  # exists; fold=0 is the earlier of a repeated time
    # Skipped by a jump forward: the answer is the jump, between the two readings.
    other = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    lo, hi = min(first, other), max(first, other)
    # Invariant: the clock reads < wall at lo, >= wall at hi. Offsets change on
    # whole seconds, so a search down to one second finds the jump exactly.
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        mid = mid.replace(microsecond=0)
        if mid <= lo:
            mid = lo + timedelta(seconds=1)
        if mid.astimezone(tz).replace(tzinfo=None) >= wall:
            hi = mid
        else:
            lo = mid
    return hi


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time())


def _merged(intervals: Iterable[Interval]) -> list[Interval]:
    """Touching or overlapping intervals of one day as one (fewer conversions)."""
    out: list[Interval] = []
    for o, c in sorted(intervals):
        if out and o <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], c))
        else:
            out.append((o, c))
    return out


def periods(
    schedule: Schedule, first_day: date, last_day: date
) -> Iterator[tuple[datetime, datetime]]:
    """Merged open periods (UTC, half-open) of the local days first_day..last_day,
    in order. Intervals that end up empty (inside a skipped hour) are dropped."""
    tz = schedule.tz
    current: tuple[datetime, datetime] | None = None
    day = first_day
    while day <= last_day:
        midnight = _day_start(day)
        for o, c in _merged(schedule.intervals_on(day)):
            start = wall_to_instant(tz, midnight + timedelta(minutes=o))
            end = wall_to_instant(tz, midnight + timedelta(minutes=c))
            if start >= end:
                continue
            if current is not None and start <= current[1]:
                current = (current[0], max(current[1], end))
                continue
            if current is not None:
                yield current
            current = (start, end)
        day += timedelta(days=1)
    if current is not None:
        yield current


@dataclass(frozen=True)
class Status:
    open: bool
    until: datetime | None  # the next change, UTC; None when none within the horizon
    local_time: datetime  # ``at`` on the schedule's wall clock, with its offset


# The search needs a day before and HORIZON_DAYS + 1 after ``at`` to stay representable.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def status_at(schedule: Schedule, at: datetime, horizon_days: int = HORIZON_DAYS) -> Status:
    """Whether ``schedule`` is open at ``at`` (aware), and when that next changes."""
    if at.tzinfo is None:
        raise ValueError("at must carry a UTC offset")
    at = at.astimezone(UTC)
    if not EARLIEST <= at < LATEST:
        raise ValueError("at must be between 1900-01-01 and 9000-01-01")
    tz = schedule.tz
    local = at.astimezone(tz)
    today = local.date()
    last_day = today + timedelta(days=horizon_days)
    # Open through the end of the last day searched: the period may go on beyond it.
    horizon_end = wall_to_instant(tz, _day_start(last_day + timedelta(days=1)))
    for start, end in periods(schedule, today - timedelta(days=1), last_day):
        if end <= at:
            continue
        if start <= at:
            return Status(True, None if end >= horizon_end else end, local)
        return Status(False, start, local)
    return Status(False, None, local)
