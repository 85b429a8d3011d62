"""A worker process for the crash and concurrency tests (tests/test_sql_crash.py,
tests/test_sql_concurrency.py). Run with ``sys.executable``; not a test module.

    crm_worker.py handle  --url U [--schema S] --rules R --events FILE [--dwell SEC [--mark]]
                          [--finish-at ISO]
                          [--out FILE [--slow SEC]]
    crm_worker.py claim   --url U [--schema S] --rules R --agent A --clients FILE --seed N --at ISO
    crm_worker.py deliver --url U [--schema S] --rules R --now ISO --limit N --out FILE [--slow SEC]
                          [--deadline SEC]

Each builds its own ``SqlStore`` and ``Engine``, prints ``ready`` once it is set up, then
(with ``--go FILE``) waits until that file exists, so that several workers start at the
same moment; it prints one JSON line with what it did when it ends.

``--dwell`` sleeps inside every unit of work (before the decision is written), so that a
SIGKILL from the parent very likely lands mid-transaction. With ``--mark`` the worker
also prints ``unit N`` (flushed) as it enters the dwell of its N-th unit of work, so that
the parent can kill it at a chosen point of the file rather than at a chosen time.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import crmcore
from crmcore import Engine, PermissionDenied
from crmcore.storage.sql import SqlStore


def _store(args: argparse.Namespace) -> SqlStore:
    return SqlStore(args.url, schema=args.schema or None)


def _ready(args: argparse.Namespace) -> None:
    print("ready", flush=True)
    if args.go:
        go = Path(args.go)
        deadline = time.monotonic() + 60
        while not go.exists():
            if time.monotonic() > deadline:
                raise SystemExit("no go signal")
            time.sleep(0.002)


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def handle(args: argparse.Namespace) -> dict[str, Any]:
    if args.dwell:
        original = SqlStore.add_decision
        units = 0

        def slow_add_decision(self: SqlStore, decision: Any) -> None:
            nonlocal units
            units += 1
            if args.mark:
                print(f"unit {units}", flush=True)
            time.sleep(args.dwell)
            original(self, decision)

        SqlStore.add_decision = slow_add_decision  # type: ignore[method-assign]
    store = _store(args)
    notifier = _FileNotifier(args.out, args.slow) if args.out else None
    engine = Engine(crmcore.load_rules(args.rules), store=store, notifier=notifier)
    lines = Path(args.events).read_text().splitlines()
    _ready(args)
    counts = {"handled": 0, "duplicate": 0, "dead_lettered": 0}
    if args.batch:
        summary = engine.handle_many((json.loads(line) for line in lines), keep_results=False, batch=args.batch)
        counts = {"handled": summary.handled, "duplicate": summary.duplicates, "dead_lettered": summary.dead_lettered}
    for line in lines if not args.batch else ():
        result = engine.handle(json.loads(line))
        counts[result.status] += 1
    if args.finish_at:
        engine.deliver_all(_time(args.finish_at))
    store.close()
    return counts


def claim(args: argparse.Namespace) -> dict[str, Any]:
    store = _store(args)
    engine = Engine(crmcore.load_rules(args.rules), store=store)
    clients = json.loads(Path(args.clients).read_text())
    random.Random(args.seed).shuffle(clients)
    at = _time(args.at)
    _ready(args)
    won: list[str] = []
    denied = 0
    for client_id in clients:
        try:
            if engine.claim(args.agent, client_id, at=at):
                won.append(client_id)
        except PermissionDenied:
            denied += 1
    store.close()
    return {"agent": args.agent, "won": won, "denied": denied}


class _FileNotifier:
    """Appends each notification's id to a file (one line, flushed) as it is sent."""

    def __init__(self, path: str, slow: float) -> None:
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the process
        self._slow = slow

    def send(self, notification: Any) -> None:
        self._file.write(notification.id + "\n")
        self._file.flush()
        if self._slow:
            time.sleep(self._slow)


def deliver(args: argparse.Namespace) -> dict[str, Any]:
    store = _store(args)
    engine = Engine(crmcore.load_rules(args.rules), store=store, notifier=_FileNotifier(args.out, args.slow))
    now = _time(args.now)
    _ready(args)
    delivered = rounds = 0
    deadline = time.monotonic() + args.deadline
    while time.monotonic() < deadline:
        report = engine.deliver_pending(now, limit=args.limit)
        rounds += 1
        delivered += report.delivered
        if report.pending == 0:
            break
        if report.delivered + report.failed == 0:
            time.sleep(0.01)  # the rest is leased by the other workers
    store.close()
    return {"delivered": delivered, "rounds": rounds}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["handle", "claim", "deliver"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--schema", default="")
    parser.add_argument("--rules", required=True)
    parser.add_argument("--go", default="")
    parser.add_argument("--events")
    parser.add_argument("--dwell", type=float, default=0.0)
    parser.add_argument("--mark", action="store_true", help="print 'unit N' entering each dwell")
    parser.add_argument("--batch", type=int, default=0, help="handle_many in batches of this many events")
    parser.add_argument("--finish-at", default="")
    parser.add_argument("--agent")
    parser.add_argument("--clients")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--at")
    parser.add_argument("--now")
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--out")
    parser.add_argument("--slow", type=float, default=0.0)
    parser.add_argument("--deadline", type=float, default=30.0)
    args = parser.parse_args(argv)
    result = {"handle": handle, "claim": claim, "deliver": deliver}[args.mode](args)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
