"""Working hours: parsing the text form, membership at a moment, canonical text."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from crmcore.rules.hours import Span, WorkingHours

BERLIN = ZoneInfo("Europe/Berlin")
MON, TUE, WED, THU, FRI, SAT, SUN = range(7)


def berlin(
    year: int, month: int, day: int, hour: int, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=BERLIN)


# --- parsing ---------------------------------------------------------------


def test_parses_a_day_range_with_a_zone() -> None:
    hours = WorkingHours.parse("Mon-Fri 09:00-18:00 Europe/Berlin")
    assert hours.time_zone == "Europe/Berlin"
    assert hours.spans == tuple(Span(day, 9 * 60, 18 * 60) for day in (MON, TUE, WED, THU, FRI))


def test_parses_a_single_day() -> None:
    hours = WorkingHours.parse("Sat 10:00-14:00 UTC")
    assert hours.spans == (Span(SAT, 600, 840),)


def test_parses_several_groups() -> None:
    hours = WorkingHours.parse("Mon-Fri 09:00-18:00, Sat 10:00-14:00 Europe/London")
    assert hours.time_zone == "Europe/London"
    assert Span(SAT, 600, 840) in hours.spans
    assert len(hours.spans) == 6


def test_parses_a_range_that_wraps_over_sunday() -> None:
    hours = WorkingHours.parse("Fri-Mon 10:00-12:00 UTC")
    assert [span.day for span in hours.spans] == [MON, FRI, SAT, SUN]


def test_parses_a_span_that_crosses_midnight() -> None:
    hours = WorkingHours.parse("Mon-Sun 22:00-06:00 UTC")
    assert len(hours.spans) == 7
    assert all(span.crosses_midnight for span in hours.spans)


def test_accepts_24_00_as_an_end() -> None:
    hours = WorkingHours.parse("Mon 18:00-24:00 UTC")
    assert hours.spans == (Span(MON, 18 * 60, 24 * 60),)


def test_same_hours_written_differently_are_equal() -> None:
    assert WorkingHours.parse("Mon-Wed 09:00-18:00, Thu-Fri 09:00-18:00 UTC") == WorkingHours.parse(
        "Mon-Fri  09:00-18:00   UTC"
    )


# --- parse errors ----------------------------------------------------------


def test_refuses_an_unknown_day() -> None:
    with pytest.raises(ValueError, match=r"unknown day 'Mnn' \(use Mon, Tue"):
        WorkingHours.parse("Mnn-Fri 09:00-18:00 Europe/Berlin")


def test_day_error_names_the_group() -> None:
    with pytest.raises(ValueError, match=r"group 2: unknown day 'Sa'"):
        WorkingHours.parse("Mon-Fri 09:00-18:00, Sa 10:00-14:00 Europe/Berlin")


@pytest.mark.parametrize(
    "times", ["9:00-18:00", "09:60-18:00", "09:00-25:00", "09:00-24:01", "0900-1800"]
)
def test_refuses_a_bad_time(times: str) -> None:
    with pytest.raises(ValueError, match=r"bad time|expected a time range"):
        WorkingHours.parse(f"Mon {times} UTC")


def test_refuses_an_unknown_time_zone() -> None:
    with pytest.raises(ValueError, match=r"unknown time zone 'Europe/Berln'"):
        WorkingHours.parse("Mon-Fri 09:00-18:00 Europe/Berln")


def test_refuses_a_missing_time_zone() -> None:
    with pytest.raises(ValueError, match=r"missing time zone"):
        WorkingHours.parse("Mon-Fri 09:00-18:00")


@pytest.mark.parametrize("text", ["", "   "])
def test_refuses_empty_text(text: str) -> None:
    with pytest.raises(ValueError, match=r"working hours are empty"):
        WorkingHours.parse(text)


def test_refuses_a_zone_without_days() -> None:
    with pytest.raises(ValueError, match=r"no days and times"):
        WorkingHours.parse("UTC")


def test_refuses_a_stray_comma() -> None:
    with pytest.raises(ValueError, match=r"group 2 is empty \(stray comma\?\)"):
        WorkingHours.parse("Mon 09:00-18:00, UTC")


def test_refuses_an_empty_span() -> None:
    with pytest.raises(ValueError, match=r"'09:00-09:00' is empty"):
        WorkingHours.parse("Mon 09:00-09:00 UTC")


def test_refuses_00_00_as_an_end() -> None:
    # 18:00-00:00 would read as an overnight span ending at midnight; 24:00 says it plainly.
    with pytest.raises(ValueError, match=r"write 24:00"):
        WorkingHours.parse("Mon 18:00-00:00 UTC")


def test_refuses_24_00_as_a_start() -> None:
    with pytest.raises(ValueError, match=r"cannot start at 24:00"):
        WorkingHours.parse("Mon 24:00-06:00 UTC")


# --- contains ----------------------------------------------------------------

OFFICE = WorkingHours.parse("Mon-Fri 09:00-18:00 Europe/Berlin")


def test_start_is_inside() -> None:
    assert OFFICE.contains(berlin(2024, 7, 1, 9, 0))  # a Monday


def test_just_before_start_is_outside() -> None:
    assert not OFFICE.contains(berlin(2024, 7, 1, 8, 59, 59))


def test_just_before_end_is_inside() -> None:
    assert OFFICE.contains(berlin(2024, 7, 1, 17, 59, 59))


def test_end_is_outside() -> None:
    assert not OFFICE.contains(berlin(2024, 7, 1, 18, 0))


def test_day_outside_the_range_is_outside() -> None:
    assert not OFFICE.contains(berlin(2024, 7, 6, 12, 0))  # a Saturday


def test_overnight_span_covers_the_next_morning() -> None:
    night = WorkingHours.parse("Fri 22:00-06:00 UTC")
    assert night.contains(datetime(2024, 7, 5, 22, 0, tzinfo=UTC))  # Friday
    assert night.contains(datetime(2024, 7, 6, 1, 0, tzinfo=UTC))  # Saturday
    assert not night.contains(datetime(2024, 7, 6, 6, 0, tzinfo=UTC))
    # Friday 01:00 would belong to a Thursday night span, which there is none of.
    assert not night.contains(datetime(2024, 7, 5, 1, 0, tzinfo=UTC))


def test_span_ending_at_24_00_includes_the_last_minute() -> None:
    evening = WorkingHours.parse("Mon 18:00-24:00 UTC")
    assert evening.contains(datetime(2024, 7, 1, 23, 59, 59, tzinfo=UTC))
    assert not evening.contains(datetime(2024, 7, 2, 0, 0, tzinfo=UTC))


def test_follows_daylight_saving_time() -> None:
    # 09:00 in Berlin: 07:00 UTC in summer (CEST), 08:00 UTC in winter (CET).
    assert OFFICE.contains(datetime(2024, 7, 1, 7, 0, tzinfo=UTC))
    assert not OFFICE.contains(datetime(2024, 7, 1, 6, 59, tzinfo=UTC))
    assert OFFICE.contains(datetime(2024, 1, 8, 8, 0, tzinfo=UTC))
    assert not OFFICE.contains(datetime(2024, 1, 8, 7, 0, tzinfo=UTC))


def test_converts_from_any_aware_zone() -> None:
    new_york = ZoneInfo("America/New_York")
    assert OFFICE.contains(datetime(2024, 7, 1, 3, 0, tzinfo=new_york))  # 09:00 in Berlin


def test_refuses_a_naive_datetime() -> None:
    with pytest.raises(ValueError, match=r"aware datetime"):
        OFFICE.contains(datetime(2024, 7, 1, 9, 0))


# --- canonical text ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("Mon-Fri 09:00-18:00 Europe/Berlin", "Mon-Fri 09:00-18:00 Europe/Berlin"),
        (
            "Sat 10:00-14:00,Mon-Fri 09:00-18:00 Europe/London",
            "Mon-Fri 09:00-18:00, Sat 10:00-14:00 Europe/London",
        ),
        ("Mon-Sun 22:00-06:00 UTC", "Mon-Sun 22:00-06:00 UTC"),
        ("Fri-Mon 10:00-12:00 UTC", "Mon 10:00-12:00, Fri-Sun 10:00-12:00 UTC"),
        ("Mon 18:00-24:00 UTC", "Mon 18:00-24:00 UTC"),
    ],
)
def test_str_is_canonical_and_parses_back_to_equal_hours(text: str, canonical: str) -> None:
    hours = WorkingHours.parse(text)
    assert str(hours) == canonical
    assert WorkingHours.parse(str(hours)) == hours
