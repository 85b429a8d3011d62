"""Activity windows over a client's event history, in Python.

A window is ``(now - length - shift, now - shift]`` (SPEC §11): it includes ``now``,
and consecutive windows split time without overlap. ``count``/``sum`` of an
empty window are 0. Deposits and ``withdrawals.sum`` count completed operations,
``withdrawals.failed`` failed withdrawals.
"""

from __future__ import annotations

from bisect import bisect_right
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
    """The window's value over ``events``, in one pass."""
    event_type = WINDOW_SPECS[(source, metric)][0]
    stamped = [(to_stamp(event.get("at")), event) for event in events if event.get("type") == event_type]
    return _over(stamped, source, metric, now, length, shift)


def _over(
    stamped: Iterable[tuple[timedelta | None, Record]], source: str, metric: str,
    now: timedelta, length: timedelta, shift: timedelta,
) -> int | float:
    """The window's value over the events of its type, each with its stamp."""
    event_type, status, summed = WINDOW_SPECS[(source, metric)]
    high = now - shift
    low = high - length
    count = 0
    total: Decimal | None = None  # summed exactly, made a float once: as the SQL path does
    default_status = DEFAULT_STATUS.get(event_type)
    for at, event in stamped:
        if at is None or not (low < at <= high):
            continue
        if status is not None and event.get("status", default_status) != status:
            continue
        count += 1
        if summed is not None:
            value = event.get(summed)
            if value is not None:
                total = (total or _ZERO) + (value if value.__class__ is Decimal else Decimal(value))
    if summed is None:
        return count
    return 0 if total is None else float(total)


_SUMMED = tuple(sorted({summed for _, _, summed in WINDOW_SPECS.values() if summed is not None}))


class _Kind:
    """The events of one type and status in time order: their stamps, and per summed field
    the running exact sum and the running count of values (``None`` values are skipped)."""

    __slots__ = ("counts", "stamps", "sums")

    def __init__(self) -> None:
        self.stamps: list[timedelta] = []
        self.sums: dict[str, list[Decimal]] = {name: [_ZERO] for name in _SUMMED}
        self.counts: dict[str, list[int]] = {name: [0] for name in _SUMMED}

    def add(self, at: timedelta, event: Record) -> None:
        self.stamps.append(at)
        for name in _SUMMED:
            value = event.get(name)
            sums, counts = self.sums[name], self.counts[name]
            if value is None:
                sums.append(sums[-1])
                counts.append(counts[-1])
            else:
                sums.append(sums[-1] + (value if value.__class__ is Decimal else Decimal(value)))
                counts.append(counts[-1] + 1)


class History(list[Any]):
    """A client's events in arrival order that answers windows by bisection.

    It keeps, per event type and status, the stamps in time order with running sums, built on
    the first window asked and kept up to date by :meth:`append` while events come in time
    order (an event older than the last of its kind, or a :meth:`pop`, drops the index: it
    is built again when next needed). MemoryStore keeps each client's history as one, so an
    evaluation's windows cost ``O(log n)`` each instead of a pass over the history.
    """

    __slots__ = ("_index",)

    def __init__(self, events: Iterable[Record] = ()) -> None:
        super().__init__(events)
        self._index: dict[tuple[Any, Any], _Kind] | None = None

    def append(self, event: Any) -> None:
        super().append(event)
        if self._index is not None and not self._add(self._index, event):
            self._index = None

    def pop(self, index: Any = -1) -> Any:
        self._index = None
        return super().pop(index)

    @staticmethod
    def _add(index: dict[tuple[Any, Any], _Kind], event: Record) -> bool:
        """Index ``event``; False when it is older than the last event of its kind."""
        event_type = event.get("type")
        at = to_stamp(event.get("at"))
        if at is None:
            return True
        key = (event_type, event.get("status", DEFAULT_STATUS.get(event_type)))
        kind = index.get(key)
        if kind is None:
            kind = index[key] = _Kind()
        if kind.stamps and at < kind.stamps[-1]:
            return False
        kind.add(at, event)
        return True

    def _built(self) -> dict[tuple[Any, Any], _Kind]:
        if self._index is None:
            index: dict[tuple[Any, Any], _Kind] = {}
            ordered = sorted(self, key=lambda event: to_stamp(event.get("at")) or _NEVER)  # stable: arrival breaks ties
            for event in ordered:
                self._add(index, event)
            self._index = index
        return self._index

    def window(self, source: str, metric: str, now: timedelta, length: timedelta, shift: timedelta) -> Any:
        """``window_value`` over this history, by bisection."""
        event_type, status, summed = WINDOW_SPECS[(source, metric)]
        high = now - shift
        low = high - length
        if status is None:  # counts of types without a status (or any status)
            kinds = [kind for (t, _), kind in self._built().items() if t == event_type]
        else:
            kind = self._built().get((event_type, status))
            kinds = [] if kind is None else [kind]
        count = 0
        total: Decimal | None = None
        for kind in kinds:
            first, last = bisect_right(kind.stamps, low), bisect_right(kind.stamps, high)
            if summed is None:
                count += last - first
            elif kind.counts[summed][last] > kind.counts[summed][first]:
                total = (total or _ZERO) + (kind.sums[summed][last] - kind.sums[summed][first])
        if summed is None:
            return count
        return 0 if total is None else float(total)


_NEVER = timedelta.min


def from_events(events: Iterable[Record] | None) -> WindowFn:
    """A window function over a list of event records (rule tests, ``rules.evaluate``, the SQL
    store's histories); a :class:`History` answers by bisection. A plain list is grouped by
    type, each event stamped once, at the first window asked: an evaluation asks for a score
    of windows, each then reads only the events of its type."""
    if isinstance(events, History):
        return events.window
    history = list(events or ())
    groups: dict[Any, list[tuple[timedelta | None, Record]]] | None = None

    def window(source: str, metric: str, now: timedelta, length: timedelta, shift: timedelta) -> Any:
        nonlocal groups
        if groups is None:
            groups = {}
            for event in history:
                groups.setdefault(event.get("type"), []).append((to_stamp(event.get("at")), event))
        return _over(groups.get(WINDOW_SPECS[(source, metric)][0], ()), source, metric, now, length, shift)

    return window
