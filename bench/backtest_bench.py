"""Benchmark: ``crmcore backtest`` against running the engine twice.

    python bench/backtest_bench.py                          # 100,000 registrations + 500,000 activity events
    python bench/backtest_bench.py --registrations 5000     # smoke run
    python bench/backtest_bench.py --scan-every 0           # events only, no scans

The events are ``store_bench.make_stream`` (seeded: registrations, then logins, trades,
deposits, snapshots, e-mail clicks and contacts of registered clients), written to a JSON
Lines file first. OLD is ``examples/rules``; NEW the same with the lead bands lowered (hot
from 50 points, warm from 30), which moves clients between desks.

Timed in the same run, best of ``--rounds``:

- **two plain runs**: ``Engine(rules, MemoryStore()).handle_many(read_events(FILE, rules),
  keep_results=False)`` for OLD, then for NEW (each reads and validates the file), with
  ``engine.scan(t)`` at the times the backtest scans (``--scan-every``, default the CLI's 1d;
  ``0``: no scans);
- **backtest**: ``crmcore.backtest.backtest(OLD, NEW, FILE, scan_every=...)`` — both replays,
  their scans and the report's tallies (its comparison is done when asked, as
  ``route_changes()`` here, timed too).

Goal: the backtest no slower than the two plain runs (ratio <= 1).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import crmcore
from common import cpu_pressure
from crmcore.backtest import _steps, backtest, scan_interval
from crmcore.engine import Engine
from crmcore.events import read_events
from crmcore.storage.memory import MemoryStore
from engine_bench import RULES_DIR
from store_bench import make_stream


def changed_rules() -> crmcore.RuleSet:
    text = (RULES_DIR / "scoring.yaml").read_text()
    changed = text.replace("bands: {hot: 70, warm: 40, cold: 0}", "bands: {hot: 50, warm: 30, cold: 0}")
    if changed == text:
        raise SystemExit("examples/rules/scoring.yaml changed: update this benchmark's edit")
    folder = Path(tempfile.mkdtemp(prefix="crmcore-backtest-"))
    for path in RULES_DIR.glob("*.yaml"):
        (folder / path.name).write_text(changed if path.name == "scoring.yaml" else path.read_text())
    return crmcore.load_rules(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--registrations", type=int, default=100_000)
    parser.add_argument("--activity", type=int, default=5, help="activity events per registration (default 5: 500,000)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--scan-every", default="1d", metavar="DURATION", help="scan interval (default 1d); 0: no scans")
    args = parser.parse_args()
    every = scan_interval(args.scan_every)
    old, new = crmcore.load_rules(RULES_DIR), changed_rules()
    stream = make_stream(args.registrations, args.seed, args.activity)
    file = Path(tempfile.mkdtemp(prefix="crmcore-backtest-")) / "events.jsonl"
    with file.open("w") as out:
        for event in stream:
            out.write(json.dumps(event) + "\n")
    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs, CPU pressure {cpu_pressure()}")
    print(f"{len(stream):,} events ({args.registrations:,} registrations), examples/rules against lowered lead bands, "
          f"scans every {args.scan_every}")
    del stream

    def plain() -> None:
        for rules in (old, new):
            engine = Engine(rules, store=MemoryStore())
            if every is None:
                engine.handle_many(read_events(file, rules), keep_results=False)
                continue
            # the backtest's own scan schedule, so both sides scan at the same times
            for chunk, scan_at in _steps(read_events(file, rules), every, lambda e: getattr(e, "at", None)):
                engine.handle_many(chunk, keep_results=False)
                if scan_at is not None:
                    engine.scan(scan_at)

    def replay() -> tuple[int, int]:
        report = backtest(old, new, file, scan_every=every)
        return len(report.route_changes()), report.scans

    best_plain = best_backtest = float("inf")
    changes = scans = 0
    for _ in range(args.rounds):
        gc.collect()
        started = time.perf_counter()
        plain()
        best_plain = min(best_plain, time.perf_counter() - started)
        gc.collect()
        started = time.perf_counter()
        changes, scans = replay()
        best_backtest = min(best_backtest, time.perf_counter() - started)
    n = sum(1 for _ in file.open())
    print(f"two plain runs  {best_plain:8.2f} s  {2 * n / best_plain:10,.0f} events/s (both rule sets together)")
    print(f"backtest        {best_backtest:8.2f} s  {2 * n / best_backtest:10,.0f} events/s  "
          f"({changes:,} clients routed otherwise, {scans:,} scans)")
    print(f"ratio backtest / two plain runs: {best_backtest / best_plain:.2f}x (goal <= 1.0x)")


if __name__ == "__main__":
    main()
