"""Activity windows over a client's event history, in Python.

A window is ``(now - length - shift, now - shift]`` (SPEC §11): it includes ``now``,
and consecutive windows split time without overlap. ``count``/``sum`` of an
empty window are 0. Deposits and ``withdrawals.sum`` count completed operations,
``withdrawals.failed`` failed withdrawals.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import timedelta
from decimal import Decimal
from typing import Any, Protocol

from crmcore.rules.values import to_stamp

# (source, metric) -> (event type, required status or None, field summed or None for a count)
WINDOW_SPECS: dict[tuple[str, str], tuple[str, str | None, str | None]] = {
    ("emails", "opens"): ("email_opened", None, None),
    ("emails", "clicks"): ("email_clicked", None, None),
    ("contacts", "count"): ("contact", None, None),
    ("deposits", "count"): ("deposit", "completed", None),
    ("deposits", "sum"): ("deposit", "completed", "amount"),
    ("withdrawals", "sum"): ("withdrawal", "completed", "amount"),
    ("withdrawals", "failed"): ("withdrawal", "failed", None),
    ("trades", "count"): ("trade", None, None),
    ("trades", "volume"): ("trade", None, "volume"),
    ("trades", "pnl"): ("trade", None, "pnl"),
    ("logins", "count"): ("login", None, None),
}

_ZERO = Decimal(0)

DEFAULT_STATUS = {"deposit": "completed"}

class Record(Protocol):
    """An event as windows read it: a dict, or anything with ``get(field, default)``
    (crmcore's event models have it)."""

    def get(self, key: str, default: Any = None, /) -> Any: ...


WindowFn = Callable[[str, str, timedelta, timedelta, timedelta], Any]
"""``(source, metric, now, length, shift) -> value``: how compiled rules read activity
(``now`` a stamp, ``length`` and ``shift`` durations; see values.py)."""


def window_value(
    events: Iterable[Record], source: str, metric: str, now: timedelta, length: timedelta, shift: timedelta
) -> int | float:
    event_type, status, summed = WINDOW_SPECS[(source, metric)]
    high = now - shift
    low = high - length
    count = 0
    total: Decimal | None = None  # summed exactly, made a float once: as the SQL path does
    for event in events:
        if event.get("type") != event_type:
            continue
        if status is not None and event.get("status", DEFAULT_STATUS.get(event_type)) != status:
            continue
        at = to_stamp(event.get("at"))
        if at is None or not (low < at <= high):
            continue
        count += 1
        if summed is not None:
            value = event.get(summed)
            if value is not None:
                total = (total or _ZERO) + (value if value.__class__ is Decimal else Decimal(value))
    if summed is None:
        return count
    return 0 if total is None else float(total)


def from_events(events: Iterable[Record] | None) -> WindowFn:
    """A window function over a list of event records (rule tests, ``rules.evaluate``)."""
    history = list(events or ())

    def window(source: str, metric: str, now: timedelta, length: timedelta, shift: timedelta) -> Any:
        return window_value(history, source, metric, now, length, shift)

    return window
