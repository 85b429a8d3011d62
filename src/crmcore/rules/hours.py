"""Working hours of an agent: when the agent may receive new clients.

Text form (the ``hours`` field of an agent in a rule file)::

    hours     := group ("," group)* ZONE
    group     := DAYS TIMES
    DAYS      := DAY | DAY "-" DAY          # Mon | Mon-Fri | Fri-Mon (wraps over Sunday)
    DAY       := Mon | Tue | Wed | Thu | Fri | Sat | Sun   (exactly this spelling)
    TIMES     := HH:MM "-" HH:MM            # 00:00 .. 23:59; 24:00 only as an end
    ZONE      := an IANA time zone name (``Europe/Berlin``, ``UTC``)

Examples::

    Mon-Fri 09:00-18:00 Europe/Berlin
    Mon-Fri 09:00-18:00, Sat 10:00-14:00 Europe/London
    Mon-Sun 22:00-06:00 UTC

Semantics:

- A span is half-open, ``[start, end)``, in the zone's local time, so daylight
  saving is followed (09:00 in Berlin is 07:00 UTC in summer, 08:00 in winter).
- An end earlier than the start means the span crosses midnight; it belongs to
  the day it starts on (``Fri 22:00-06:00`` covers Friday 22:00 to Saturday 06:00).
- ``24:00`` ends a span at midnight. ``00:00`` is refused as an end (write
  ``24:00``), and so is an empty span (start equal to end).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["DAY_NAMES", "Span", "WorkingHours"]

DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MINUTES_PER_DAY = 24 * 60

_TIME = re.compile(r"(\d{2}):(\d{2})")


@dataclass(frozen=True, order=True)
class Span:
    """One working span: ``day`` (0 = Monday) from ``start`` to ``end``, in minutes after midnight.

    ``end <= start`` means the span ends on the next day.
    """

    day: int
    start: int
    end: int

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start

    def contains(self, weekday: int, minute: int) -> bool:
        """Whether local ``weekday`` (0 = Monday) at ``minute`` after midnight falls in this span."""
        if not self.crosses_midnight:
            return weekday == self.day and self.start <= minute < self.end
        next_day = (self.day + 1) % 7
        return (weekday == self.day and minute >= self.start) or (
            weekday == next_day and minute < self.end
        )


@dataclass(frozen=True)
class WorkingHours:
    """Weekly working hours in one time zone; parse them with :meth:`parse`.

    Equal hours compare equal however they were written: ``spans`` holds one
    sorted span per day and time range.
    """

    spans: tuple[Span, ...]
    time_zone: str

    @classmethod
    def parse(cls, text: str) -> WorkingHours:
        """Parse the text form (see the module docstring); raise ``ValueError`` saying what and where."""
        tokens = text.split()
        if not tokens:
            raise ValueError(
                "working hours are empty (expected e.g. 'Mon-Fri 09:00-18:00 Europe/Berlin')"
            )
        *body, zone_name = tokens
        if _looks_like_times(zone_name) or zone_name.endswith(","):
            raise ValueError(
                f"working hours {text!r}: missing time zone at the end (e.g. 'Europe/Berlin', 'UTC')"
            )
        _load_zone(zone_name)
        if not body:
            raise ValueError(
                f"working hours {text!r}: no days and times before the time zone {zone_name!r}"
            )
        spans: set[Span] = set()
        for number, group in enumerate(" ".join(body).split(","), start=1):
            spans.update(_parse_group(group.strip(), number, text))
        return cls(spans=tuple(sorted(spans)), time_zone=zone_name)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    def contains(self, at: datetime) -> bool:
        """Whether the aware datetime ``at`` falls within these hours; a naive one is refused."""
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError(f"working hours need an aware datetime, got naive {at.isoformat()}")
        local = at.astimezone(self.zone)
        # Span bounds are whole minutes, so truncating to the minute keeps [start, end) exact.
        minute = local.hour * 60 + local.minute
        weekday = local.weekday()
        return any(span.contains(weekday, minute) for span in self.spans)

    def __str__(self) -> str:
        days_by_times: dict[tuple[int, int], list[int]] = {}
        for span in self.spans:
            days_by_times.setdefault((span.start, span.end), []).append(span.day)
        groups: list[tuple[int, str]] = []
        for (start, end), days in days_by_times.items():
            times = f"{_format_minute(start)}-{_format_minute(end)}"
            for first, last in _runs(days):
                label = (
                    DAY_NAMES[first] if first == last else f"{DAY_NAMES[first]}-{DAY_NAMES[last]}"
                )
                groups.append((first, f"{label} {times}"))
        return ", ".join(group for _, group in sorted(groups)) + f" {self.time_zone}"


def _parse_group(group: str, number: int, text: str) -> list[Span]:
    where = f"working hours {text!r}, group {number}"
    parts = group.split()
    if len(parts) != 2:
        shown = f"{group!r}" if group else "is empty (stray comma?)"
        raise ValueError(f"{where} {shown}: expected DAYS TIMES, e.g. 'Mon-Fri 09:00-18:00'")
    days_text, times_text = parts
    days = _parse_days(days_text, where)
    start, end = _parse_times(times_text, where)
    return [Span(day, start, end) for day in days]


def _parse_days(days_text: str, where: str) -> list[int]:
    first_name, dash, last_name = days_text.partition("-")
    first = _parse_day(first_name, where)
    if not dash:
        return [first]
    last = _parse_day(last_name, where)
    count = (last - first) % 7 + 1
    return [(first + offset) % 7 for offset in range(count)]


def _parse_day(name: str, where: str) -> int:
    if name not in DAY_NAMES:
        raise ValueError(f"{where}: unknown day {name!r} (use Mon, Tue, Wed, Thu, Fri, Sat, Sun)")
    return DAY_NAMES.index(name)


def _parse_times(times_text: str, where: str) -> tuple[int, int]:
    start_text, dash, end_text = times_text.partition("-")
    if not dash:
        raise ValueError(f"{where}: expected a time range HH:MM-HH:MM, got {times_text!r}")
    start = _parse_time(start_text, where)
    end = _parse_time(end_text, where)
    if start == MINUTES_PER_DAY:
        raise ValueError(f"{where}: a span cannot start at 24:00 (start at 00:00 of the next day)")
    if end == 0:
        raise ValueError(
            f"{where}: {times_text!r} ends at 00:00; write 24:00 for the end of the day"
        )
    if start == end:
        raise ValueError(f"{where}: {times_text!r} is empty (start equals end)")
    return start, end


def _parse_time(time_text: str, where: str) -> int:
    match = _TIME.fullmatch(time_text)
    if match is None:
        raise ValueError(f"{where}: bad time {time_text!r} (use HH:MM, e.g. 09:00)")
    hours, minutes = int(match[1]), int(match[2])
    minute = hours * 60 + minutes
    if minutes > 59 or minute > MINUTES_PER_DAY:
        raise ValueError(f"{where}: bad time {time_text!r} (00:00 to 23:59, or 24:00 as an end)")
    return minute


def _load_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r} (use an IANA name such as 'Europe/Berlin' or 'UTC')"
        ) from None


def _looks_like_times(token: str) -> bool:
    start, dash, end = token.partition("-")
    return bool(dash) and _TIME.fullmatch(start) is not None and _TIME.fullmatch(end) is not None


def _format_minute(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _runs(days: list[int]) -> list[tuple[int, int]]:
    """Collapse sorted day numbers into (first, last) runs of consecutive days."""
    runs: list[tuple[int, int]] = []
    for day in days:
        if runs and runs[-1][1] == day - 1:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs
