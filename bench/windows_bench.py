"""Benchmark: activity windows over one client's history, three ways, in the same run.

    python bench/windows_bench.py                  # histories of 20, 100, 300 and 1,000 events
    python bench/windows_bench.py --sizes 300 --windows 11

An evaluation asks for every window its rules use (``--windows``, default 22: the example
rules' scores and triggers, each asked twice as evaluate and breakdown do) over the
client's history. Timed per evaluation, best of ``--repeat``:

- **per window**: a pass over the whole history for each window (``window_value``);
- **grouped**: ``from_events(history)``, what the SQL store's histories and rule tests get:
  the history grouped by event type and stamped once, at the first window;
- **indexed**: a bisecting ``History`` built for the evaluation (what MemoryStore keeps
  up to date across events; built per evaluation it pays for its index every time).

The script first checks that the three agree on every window.
"""

from __future__ import annotations

import argparse
import random
import timeit
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

from crmcore.rules.values import to_stamp
from crmcore.rules.windows import WINDOW_SPECS, History, from_events, window_value

T0 = datetime(2026, 1, 1, tzinfo=UTC)
KINDS = ["login", "login", "trade", "trade", "deposit", "withdrawal", "email_clicked", "account_snapshot", "contact"]


def history(size: int, seed: int) -> list[dict[str, Any]]:
    """``size`` events 5 hours apart, a funded client's mix."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    for i in range(size):
        kind = rng.choice(KINDS)
        event: dict[str, Any] = {"type": kind, "at": T0 + timedelta(hours=5 * i)}
        if kind == "trade":
            event.update(volume=Decimal(rng.randrange(1, 500)) / 100, pnl=Decimal(rng.randrange(-9000, 9000)) / 100)
        elif kind in ("deposit", "withdrawal"):
            event.update(amount=Decimal(rng.randrange(100, 90000)) / 100, status=rng.choice(["completed", "completed", "failed"]))
        events.append(event)
    return events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 100, 300, 1000])
    parser.add_argument("--windows", type=int, default=22, help="windows asked per evaluation")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    specs = sorted(WINDOW_SPECS)
    print(f"{'events':>7}  {'per window':>12}  {'grouped':>12}  {'indexed':>12}  grouped / per window  indexed / per window")
    for size in args.sizes:
        events = history(size, args.seed)
        now = to_stamp(T0 + timedelta(hours=5 * size))
        assert now is not None
        asked: Asked = [(*specs[i % len(specs)], now, timedelta(days=30), timedelta(days=30 * (i // len(specs) % 2)))
                 for i in range(args.windows)]

        ways = [partial(way, events, asked) for way in (per_window, grouped, indexed)]
        assert ways[0]() == ways[1]() == ways[2](), "the three ways disagree"
        number = max(1, 20_000 // size)
        times = [_best(fn, number, args.repeat) for fn in ways]
        base = times[0]
        print(f"{size:>7}  " + "  ".join(f"{t * 1e6:>10.0f}us" for t in times)
              + f"  {times[1] / base:>20.2f}x  {times[2] / base:>20.2f}x")


Asked = list[tuple[str, str, timedelta, timedelta, timedelta]]


def per_window(events: list[dict[str, Any]], asked: Asked) -> list[Any]:
    return [window_value(events, *q) for q in asked]


def grouped(events: list[dict[str, Any]], asked: Asked) -> list[Any]:
    window = from_events(events)
    return [window(*q) for q in asked]


def indexed(events: list[dict[str, Any]], asked: Asked) -> list[Any]:
    window = History(events).window
    return [window(*q) for q in asked]


def _best(fn: Callable[[], Any], number: int, repeat: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number


if __name__ == "__main__":
    main()
