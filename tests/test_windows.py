"""Activity windows in Python: the plain pass over a history (``window_value``), the grouped
window function of a plain list (``from_events``: the SQL store's histories, rule tests) and
the bisecting :class:`History` that MemoryStore keeps agree with a reference written from
SPEC 11 on every window, however the events arrive (out of time order too) and whatever is
rolled back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from crmcore.rules.values import to_stamp
from crmcore.rules.windows import DEFAULT_STATUS, WINDOW_SPECS, History, from_events, window_value

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

KINDS = {
    "deposit": {"amount": True, "status": ["completed", "failed", None]},
    "withdrawal": {"amount": True, "status": ["requested", "completed", "failed"]},
    "trade": {"volume": True, "pnl": True},
    "login": {}, "email_opened": {}, "email_clicked": {}, "contact": {},
}


@st.composite
def event(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["deposit", "deposit", "trade", "trade", "login", "withdrawal", *sorted(KINDS)]))
    spec = KINDS[kind]
    record: dict[str, Any] = {"type": kind, "at": T0 + timedelta(days=draw(st.integers(-40, 3)), hours=draw(st.sampled_from([0, 12])))}
    if "status" in spec:
        status = draw(st.sampled_from(spec["status"]))
        if status is not None:
            record["status"] = status
    for name in ("amount", "volume", "pnl"):
        if name in spec:
            record[name] = draw(st.one_of(st.none(), st.decimals(-1000, 10000, places=2, allow_nan=False)))
    return record


windows = st.tuples(
    st.sampled_from(sorted(WINDOW_SPECS)),
    st.sampled_from([timedelta(hours=1), timedelta(days=1), timedelta(days=7), timedelta(days=30)]),
    st.sampled_from([timedelta(0), timedelta(days=1), timedelta(days=30)]),
    st.integers(-24 * 40, 24 * 3).map(lambda h: T0 + timedelta(hours=h)),
)


def reference(events: list[dict[str, Any]], source: str, metric: str, now: datetime, length: timedelta, shift: timedelta) -> Any:
    """SPEC 11, plainly: events of the window's type (and status) in (now - length - shift,
    now - shift]; count, or the exact sum of the field (made a float), 0 when empty."""
    event_type, status, summed = WINDOW_SPECS[(source, metric)]
    inside = [
        e for e in events
        if e["type"] == event_type and (status is None or e.get("status", DEFAULT_STATUS.get(event_type)) == status)
        and now - length - shift < e["at"] <= now - shift
    ]
    if summed is None:
        return len(inside)
    values = [Decimal(e[summed]) for e in inside if e.get(summed) is not None]
    return float(sum(values)) if values else 0


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(event(), event(), event(), st.just("pop")), max_size=30), st.lists(windows, min_size=1, max_size=6))
def test_a_history_answers_every_window_as_a_pass_over_its_events(steps: list[Any], asked: list[Any]) -> None:
    history = History()
    plain: list[dict[str, Any]] = []

    def check() -> None:
        for (source, metric), length, shift, now in asked:
            stamp = to_stamp(now)
            assert stamp is not None
            expected = reference(plain, source, metric, now, length, shift)
            assert window_value(plain, source, metric, stamp, length, shift) == expected, (source, metric, length, shift, now)
            assert from_events(plain)(source, metric, stamp, length, shift) == expected
            assert history.window(source, metric, stamp, length, shift) == expected

    for step in steps:  # each check builds the index (when dropped); appends extend or drop it
        if step == "pop":
            if plain:
                plain.pop()
                history.pop()
        elif step != "ask":
            plain.append(step)
            history.append(step)
        check()
    assert list(history) == plain


def test_sums_are_exact_and_the_window_includes_now() -> None:
    history = History([
        {"type": "deposit", "at": T0, "amount": Decimal("0.10")},
        {"type": "deposit", "at": T0 - timedelta(days=30), "amount": Decimal("0.20")},
        {"type": "deposit", "at": T0 - timedelta(days=45), "amount": Decimal("0.70")},
        {"type": "deposit", "at": T0 - timedelta(days=40), "amount": Decimal("9"), "status": "failed"},
    ])
    stamp = to_stamp(T0)
    assert stamp is not None
    assert history.window("deposits", "count", stamp, timedelta(days=30), timedelta(0)) == 1
    assert history.window("deposits", "sum", stamp, timedelta(days=30), timedelta(days=30)) == 0.9
    assert history.window("deposits", "sum", stamp - timedelta(days=100), timedelta(days=30), timedelta(0)) == 0
