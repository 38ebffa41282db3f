"""The opening-hours arithmetic, without a database."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from app.business_hours.schedule import (
    DAYS,
    check_timezone,
    format_hhmm,
    overlap_index,
    parse_hhmm,
    schedule_from_json,
    status_at,
    wall_to_instant,
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def sched(tz: str, weekly: dict[str, list[list[str]]], exceptions: list | None = None):  # type: ignore[type-arg]
    return schedule_from_json(tz, weekly, exceptions or [])


NINE_TO_FIVE = {d: [["09:00", "17:00"]] for d in DAYS[:5]}


# --- parsing -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "minutes"), [("00:00", 0), ("09:30", 570), ("23:59", 1439), ("12:05", 725)]
)
def test_times_parse_to_minutes_and_back(text: str, minutes: int) -> None:
    assert parse_hhmm(text) == minutes
    assert format_hhmm(minutes) == text


@pytest.mark.parametrize(
    "text", ["24:00", "9:00", "09:60", "25:00", "0900", "09:00:00", "", "ab:cd"]
)
def test_bad_opening_times_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="HH:MM"):
        parse_hhmm(text)


def test_midnight_is_allowed_only_as_a_closing_time() -> None:
    assert parse_hhmm("24:00", allow_24=True) == 1440
    with pytest.raises(ValueError):
        parse_hhmm("24:01", allow_24=True)


def test_overlaps_are_found_but_touching_intervals_are_fine() -> None:
    assert overlap_index([(540, 720), (720, 1020)]) is None
    assert overlap_index([(540, 720), (700, 1020)]) == 1
    assert overlap_index([(780, 1020), (540, 720), (600, 660)]) == 2
    assert overlap_index([(540, 1020), (540, 1020)]) == 1


def test_time_zones_must_be_known_and_a_wrong_case_gets_a_hint() -> None:
    assert check_timezone("Europe/London") == "Europe/London"
    assert check_timezone("UTC") == "UTC"
    with pytest.raises(ValueError, match="did you mean 'America/New_York'"):
        check_timezone("america/new_york")
    for bad in ("Mars/Olympus", "../etc/passwd", "/etc/localtime", "EST5EDT/", ""):
        with pytest.raises(ValueError, match="unknown IANA time zone"):
            check_timezone(bad)


# --- wall clock to instants across DST -------------------------------------------------

NY = ZoneInfo("America/New_York")


def test_a_repeated_time_is_its_first_occurrence() -> None:
    # 1 Nov 2026: 01:00-02:00 happens twice in New York; 01:30 EDT comes first.
    assert wall_to_instant(NY, datetime(2026, 11, 1, 1, 30)) == utc(2026, 11, 1, 5, 30)


def test_a_skipped_time_is_the_moment_of_the_jump() -> None:
    # 8 Mar 2026: clocks jump from 02:00 EST to 03:00 EDT (07:00Z).
    assert wall_to_instant(NY, datetime(2026, 3, 8, 2, 30)) == utc(2026, 3, 8, 7, 0)
    assert wall_to_instant(NY, datetime(2026, 3, 8, 2, 0)) == utc(2026, 3, 8, 7, 0)
    assert wall_to_instant(NY, datetime(2026, 3, 8, 3, 0)) == utc(2026, 3, 8, 7, 0)


# --- status ----------------------------------------------------------------------------


def test_a_plain_day_opens_and_closes_on_the_local_clock() -> None:
    s = sched("America/New_York", NINE_TO_FIVE)
    # Tue 24 Nov 2026, EST (UTC-5).
    st = status_at(s, utc(2026, 11, 24, 15, 0))
    assert st.open and st.until == utc(2026, 11, 24, 22, 0)
    assert st.local_time.isoformat() == "2026-11-24T10:00:00-05:00"
    # Exactly at closing it is closed; it opens again next morning.
    st = status_at(s, utc(2026, 11, 24, 22, 0))
    assert not st.open and st.until == utc(2026, 11, 25, 14, 0)
    # Exactly at opening it is open.
    assert status_at(s, utc(2026, 11, 25, 14, 0)).open


def test_friday_evening_waits_for_monday() -> None:
    s = sched("America/New_York", NINE_TO_FIVE)
    st = status_at(s, utc(2026, 11, 27, 23, 0))  # Fri 18:00 EST
    assert not st.open and st.until == utc(2026, 11, 30, 14, 0)  # Mon 09:00 EST


def test_an_offset_in_the_question_does_not_change_the_answer() -> None:
    s = sched("America/New_York", NINE_TO_FIVE)
    at = datetime(2026, 11, 24, 16, 0, tzinfo=ZoneInfo("Europe/Berlin"))  # 10:00 EST
    st = status_at(s, at)
    assert st.open and st.until == utc(2026, 11, 24, 22, 0)
    assert st.local_time.isoformat() == "2026-11-24T10:00:00-05:00"


def test_spring_forward_day_in_new_york() -> None:
    # Sun 8 Mar 2026 open 01:00-03:00 local: 01:00 EST (06:00Z) to 03:00 EDT (07:00Z),
    # one real hour. Monday 9-17 is on EDT (13:00Z-21:00Z).
    s = sched("America/New_York", NINE_TO_FIVE | {"sun": [["01:00", "03:00"]]})
    st = status_at(s, utc(2026, 3, 8, 5, 59))
    assert not st.open and st.until == utc(2026, 3, 8, 6, 0)
    st = status_at(s, utc(2026, 3, 8, 6, 30))
    assert st.open and st.until == utc(2026, 3, 8, 7, 0)
    assert st.local_time.isoformat() == "2026-03-08T01:30:00-05:00"
    st = status_at(s, utc(2026, 3, 8, 7, 0))
    assert not st.open and st.until == utc(2026, 3, 9, 13, 0)
    assert st.local_time.isoformat() == "2026-03-08T03:00:00-04:00"
    st = status_at(s, utc(2026, 3, 9, 13, 0))
    assert st.open and st.until == utc(2026, 3, 9, 21, 0)


def test_hours_inside_the_skipped_hour_never_open() -> None:
    s = sched("America/New_York", {"sun": [["02:00", "02:30"], ["02:45", "04:00"]]})
    st = status_at(s, utc(2026, 3, 8, 6, 59))  # 01:59 EST
    # 02:00-02:30 does not exist that day; 02:45-04:00 opens at the jump (03:00 EDT).
    assert not st.open and st.until == utc(2026, 3, 8, 7, 0)
    st = status_at(s, utc(2026, 3, 8, 7, 0))
    assert st.open and st.until == utc(2026, 3, 8, 8, 0)
    # On an ordinary Sunday both intervals exist.
    st = status_at(s, utc(2026, 3, 15, 6, 10))  # 02:10 EDT
    assert st.open and st.until == utc(2026, 3, 15, 6, 30)


def test_fall_back_day_in_new_york() -> None:
    # Sun 1 Nov 2026 open 01:00-03:00 local: 01:00 EDT (05:00Z) to 03:00 EST (08:00Z),
    # three real hours, open through the repeated hour.
    s = sched("America/New_York", NINE_TO_FIVE | {"sun": [["01:00", "03:00"]]})
    st = status_at(s, utc(2026, 11, 1, 6, 30))  # the second 01:30, EST
    assert st.open and st.until == utc(2026, 11, 1, 8, 0)
    assert st.local_time.isoformat() == "2026-11-01T01:30:00-05:00"
    st = status_at(s, utc(2026, 11, 1, 4, 59))
    assert not st.open and st.until == utc(2026, 11, 1, 5, 0)
    st = status_at(s, utc(2026, 11, 1, 8, 0))
    assert not st.open and st.until == utc(2026, 11, 2, 14, 0)  # Mon 09:00 EST


def test_closing_in_the_repeated_hour_closes_the_first_time_round() -> None:
    s = sched("America/New_York", {"sun": [["00:00", "01:30"]]})
    st = status_at(s, utc(2026, 11, 1, 4, 0))
    assert st.open and st.until == utc(2026, 11, 1, 5, 30)  # 01:30 EDT
    st = status_at(s, utc(2026, 11, 1, 6, 15))  # 01:15 EST: the clock reads it again
    assert not st.open and st.until == utc(2026, 11, 8, 5, 0)  # next Sunday 00:00 EST


def test_london_weekend_around_the_spring_change_is_23_hours_on_sunday() -> None:
    # BST starts Sun 29 Mar 2026 at 01:00 GMT. Open all weekend, closed Monday.
    s = sched("Europe/London", {"sat": [["00:00", "24:00"]], "sun": [["00:00", "24:00"]]})
    st = status_at(s, utc(2026, 3, 28, 12, 0))
    assert st.open and st.until == utc(2026, 3, 29, 23, 0)  # Mon 00:00 BST
    st = status_at(s, utc(2026, 3, 29, 23, 0))
    assert not st.open and st.until == utc(2026, 4, 3, 23, 0)  # Sat 00:00 BST


def test_london_autumn_change_keeps_local_opening_times() -> None:
    # BST ends Sun 25 Oct 2026 at 01:00 GMT. 09:00-17:00 on Friday is BST, Monday GMT.
    s = sched("Europe/London", NINE_TO_FIVE | {"sun": [["00:30", "02:30"]]})
    assert status_at(s, utc(2026, 10, 23, 8, 0)).until == utc(2026, 10, 23, 16, 0)
    # Sunday 00:30 BST (23:30Z Sat) to 02:30 GMT (02:30Z): three real hours.
    st = status_at(s, utc(2026, 10, 25, 1, 15))
    assert st.open and st.until == utc(2026, 10, 25, 2, 30)
    st = status_at(s, utc(2026, 10, 25, 2, 30))
    assert not st.open and st.until == utc(2026, 10, 26, 9, 0)


def test_hours_past_midnight_merge_into_one_open_period() -> None:
    s = sched(
        "Europe/London",
        {"fri": [["17:00", "24:00"]], "sat": [["00:00", "02:00"], ["10:00", "12:00"]]},
    )
    # Fri 27 Nov 2026 18:00 GMT: open until Saturday 02:00, not "until midnight".
    st = status_at(s, utc(2026, 11, 27, 18, 0))
    assert st.open and st.until == utc(2026, 11, 28, 2, 0)
    st = status_at(s, utc(2026, 11, 28, 1, 0))
    assert st.open and st.until == utc(2026, 11, 28, 2, 0)
    st = status_at(s, utc(2026, 11, 28, 2, 0))
    assert not st.open and st.until == utc(2026, 11, 28, 10, 0)


def test_touching_intervals_on_one_day_merge() -> None:
    s = sched("UTC", {"mon": [["12:00", "17:00"], ["09:00", "12:00"]]})
    st = status_at(s, utc(2026, 11, 23, 10, 0))
    assert st.open and st.until == utc(2026, 11, 23, 17, 0)


def test_a_midnight_that_does_not_exist_still_joins_the_days() -> None:
    # Santiago jumps from Sat 5 Sep 2026 24:00 straight to Sun 01:00.
    tz = ZoneInfo("America/Santiago")
    midnight = datetime(2026, 9, 6, 0, 0)
    assert midnight.replace(tzinfo=tz).astimezone(UTC).astimezone(tz).hour == 1
    s = sched("America/Santiago", {"sat": [["20:00", "24:00"]], "sun": [["00:00", "02:00"]]})
    st = status_at(s, datetime(2026, 9, 5, 22, 0, tzinfo=tz))
    jump = wall_to_instant(tz, midnight)
    assert st.open and st.until == jump + timedelta(hours=1)  # Sun 02:00 local


def test_a_holiday_closes_a_working_day_and_an_exception_can_open_a_closed_one() -> None:
    s = sched(
        "America/New_York",
        NINE_TO_FIVE,
        [
            {"date": "2026-12-25", "name": "Christmas", "closed": True},
            {"date": "2026-12-26", "open": [["10:00", "14:00"]]},  # a Saturday
            {"date": "2026-12-24", "open": [["09:00", "13:00"]]},
        ],
    )
    st = status_at(s, utc(2026, 12, 24, 17, 0))  # Thu 12:00 EST, short day
    assert st.open and st.until == utc(2026, 12, 24, 18, 0)
    st = status_at(s, utc(2026, 12, 24, 18, 0))
    assert not st.open and st.until == utc(2026, 12, 26, 15, 0)  # skips Christmas
    st = status_at(s, utc(2026, 12, 25, 15, 0))  # Christmas 10:00
    assert not st.open
    st = status_at(s, utc(2026, 12, 26, 19, 0))
    assert not st.open and st.until == utc(2026, 12, 28, 14, 0)


def test_always_open_and_never_open_have_no_next_change() -> None:
    always = sched("Asia/Tokyo", {d: [["00:00", "24:00"]] for d in DAYS})
    st = status_at(always, utc(2026, 6, 1, 3, 0))
    assert st.open and st.until is None
    never = sched("Asia/Tokyo", {})
    st = status_at(never, utc(2026, 6, 1, 3, 0))
    assert not st.open and st.until is None


def test_the_next_opening_is_found_up_to_the_horizon() -> None:
    start = utc(2026, 1, 1, 12, 0)
    near = date(2026, 1, 1) + timedelta(days=390)
    far = date(2026, 1, 1) + timedelta(days=420)
    s = sched("UTC", {}, [{"date": near.isoformat(), "open": [["08:00", "09:00"]]}])
    st = status_at(s, start)
    assert not st.open and st.until == datetime(near.year, near.month, near.day, 8, tzinfo=UTC)
    s = sched("UTC", {}, [{"date": far.isoformat(), "open": [["08:00", "09:00"]]}])
    assert status_at(s, start).until is None
    # Open every day except a holiday 300 days ahead: open until that holiday.
    hol = date(2026, 1, 1) + timedelta(days=300)
    s = sched(
        "UTC",
        {d: [["00:00", "24:00"]] for d in DAYS},
        [{"date": hol.isoformat(), "closed": True}],
    )
    st = status_at(s, start)
    assert st.open and st.until == datetime(hol.year, hol.month, hol.day, tzinfo=UTC)


def test_a_question_without_an_offset_or_out_of_range_is_refused() -> None:
    s = sched("UTC", NINE_TO_FIVE)
    with pytest.raises(ValueError, match="offset"):
        status_at(s, datetime(2026, 1, 1, 12, 0))
    with pytest.raises(ValueError, match="between"):
        status_at(s, utc(9999, 12, 31, 0, 0))
    with pytest.raises(ValueError, match="between"):
        status_at(s, utc(1, 1, 1, 0, 0))
