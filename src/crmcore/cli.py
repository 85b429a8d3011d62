"""The ``crmcore`` command: a thin layer over the public API."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import inspect
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from crmcore.rules import RuleError, RuleSet, load_rules
from crmcore.rules.values import to_moment

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

    from crmcore.case import Case
    from crmcore.engine import Result
    from crmcore.storage.sql import SqlStore

_DEAD_LETTERS_SHOWN = 20  # `run` lists at most this many dead letters


def _summary(rules: RuleSet) -> dict[str, object]:
    return {
        "version": rules.version,
        "scores": {name: len(score.rules) for name, score in rules.scores.items()},
        "routing": {stage: len(routes) for stage, routes in rules.routing.items()},
        "triggers": len(rules.triggers),
        "desks": len(rules.desks),
        "agents": len(rules.agents),
        "lists": len(rules.lists),
    }


def _render_rule_error(err: RuleError, out: TextIO) -> None:
    for diagnostic in err.diagnostics:
        out.write(diagnostic.render() + "\n")
    errors = len(err.errors)
    warnings = len(err.diagnostics) - errors
    out.write(f"{errors} error{'s' if errors != 1 else ''}, {warnings} warning{'s' if warnings != 1 else ''}\n")


def cmd_check(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Load and check rule files; every diagnostic with file:line:col, source line and caret."""
    try:
        rules = load_rules(args.paths)
    except RuleError as error:
        if args.format == "json":
            json.dump({"ok": False, "diagnostics": [d.as_json() for d in error.diagnostics]}, out, indent=2)
            out.write("\n")
        else:
            _render_rule_error(error, out)
        return 1
    summary = _summary(rules)
    if args.format == "json":
        json.dump({"ok": True, "diagnostics": [d.as_json() for d in rules.warnings], "summary": summary}, out, indent=2)
        out.write("\n")
        return 0
    for warning in rules.warnings:
        out.write(warning.render() + "\n")
    score_rules = sum(len(s.rules) for s in rules.scores.values())
    routes = sum(len(r) for r in rules.routing.values())
    out.write(
        f"ok: {', '.join(map(str, args.paths))}: {len(rules.scores)} score(s) with {score_rules} rules, "
        f"{routes} routing rules, {len(rules.triggers)} triggers, {len(rules.desks)} desks, "
        f"{len(rules.agents)} agents; version {rules.version[:12]}"
        + (f"; {len(rules.warnings)} warning(s)" if rules.warnings else "")
        + "\n"
    )
    return 0


def cmd_schema(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Print the JSON Schema of crmcore's input (``events``: every event type)."""
    from crmcore.events import events_json_schema

    json.dump(events_json_schema(), out, indent=2)
    out.write("\n")
    return 0


def cmd_fmt(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Convert rule files between YAML and .crm, without loss (same rules, same version; each
    comment on its own line above what it stood above or in). A file is printed, or written to
    -o OUT; a folder's rule files are written into the folder OUT, each as NAME.crm or
    NAME.yaml. The output is canonical: fmt of it is the same."""
    from crmcore.rules.convert import SUFFIXES, LossError, convert, convert_folder, verify
    from crmcore.rules.diagnostics import SourceFile

    path = Path(args.path)
    try:
        if path.is_dir():
            if args.output is None:
                raise _Failure(f"{path} is a folder: name the folder to write into with -o OUT")
            converted = convert_folder(path, args.to)
            for name, text in converted.items():
                (Path(args.output) / name).parent.mkdir(parents=True, exist_ok=True)
                (Path(args.output) / name).write_text(text, encoding="utf-8")
            err.write(f"wrote {len(converted)} file(s) into {args.output}\n")
            return 0
        if not path.is_file():
            raise _Failure(f"no such file or folder: {path}")
        source = SourceFile(str(path), path.read_text(encoding="utf-8"))
        text = convert(source, args.to)
        verify([source], [SourceFile(str(path.with_suffix(SUFFIXES[args.to])), text)])
    except RuleError as error:
        _render_rule_error(error, err)
        return 1
    except (OSError, UnicodeDecodeError, LossError) as error:
        raise _Failure(str(error)) from None
    if args.output is None:
        out.write(text)
        return 0
    target = Path(args.output)
    if target.is_dir():
        target = target / path.with_suffix(SUFFIXES[args.to]).name
    try:
        target.write_text(text, encoding="utf-8")
    except OSError as error:
        raise _Failure(str(error)) from None
    return 0


class _Failure(Exception):
    """A command cannot go on: the message goes to stderr, the command exits 1."""


def _load(paths: Sequence[str], err: TextIO) -> RuleSet | None:
    """The rule set, or ``None`` after printing its diagnostics (as ``check`` does) on ``err``."""
    try:
        return load_rules(paths)
    except RuleError as error:
        _render_rule_error(error, err)
        return None


def _events_file(path: str) -> Path:
    file = Path(path)
    if not file.exists():
        raise _Failure(f"{path}: no such events file")
    if not file.is_file():
        raise _Failure(f"{path}: not a file (the events are one JSON object per line)")
    return file


class _Progress:
    """``--decisions`` lines as results come, and a progress line on a terminal."""

    def __init__(self, decisions: TextIO | None, terminal: TextIO | None) -> None:
        self.decisions = decisions
        self.terminal = terminal
        self.count = 0
        self.started = self.shown = time.monotonic()

    def __call__(self, result: Result) -> None:
        self.count += 1
        if self.decisions is not None:
            self.decisions.write(json.dumps(result.as_dict(), default=str) + "\n")
        if self.terminal is not None:
            now = time.monotonic()
            if now - self.shown >= 0.2:
                self.shown = now
                self.draw(now)

    def draw(self, now: float) -> None:
        assert self.terminal is not None
        elapsed = now - self.started
        rate = f"  {self.count / elapsed:,.0f}/s" if elapsed > 0 else ""
        self.terminal.write(f"\r{self.count:,} events{rate}\033[K")
        self.terminal.flush()

    def done(self) -> None:
        if self.terminal is not None:
            self.draw(time.monotonic())
            self.terminal.write("\n")
            self.terminal.flush()


def cmd_run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Process events (JSON Lines) with the rules into the database (--db, default
    sqlite:///crmcore.db; its tables are created when it is empty) and print a summary:
    handled, duplicates, dead-lettered (each dead letter of this run with its line and
    reason). Running the same file again changes nothing: every event is a duplicate.

    Exit status: 0 when the events were processed, also when some were dead-lettered
    (1 with --strict); 1 when the rules do not load, the events file is missing or
    unreadable, or the database cannot be used."""
    from crmcore.engine import Engine
    from crmcore.events import read_events

    rules = _load(args.rules, err)
    if rules is None:
        return 1
    events = _events_file(args.events)
    store = _open_store(args, create=True)
    engine = Engine(rules, store=store)
    known_letters = len(store.dead_letters())
    decisions: TextIO | None = None
    if args.decisions is not None:
        try:
            decisions = open(args.decisions, "w", encoding="utf-8")  # noqa: SIM115 - closed below
        except OSError as error:
            raise _Failure(f"{args.decisions}: cannot write the decisions: {error.strerror or error}") from None
    progress = _Progress(decisions, err if err.isatty() else None)
    try:
        summary = engine.handle_many(read_events(events, rules), keep_results=False, progress=progress, batch=args.batch)
    except (OSError, UnicodeDecodeError) as error:
        raise _Failure(f"{args.events}: cannot read the events: {error}") from None
    finally:
        progress.done()
        if decisions is not None:
            decisions.close()
    out.write(
        f"handled {summary.handled:,}, duplicates {summary.duplicates:,}, "
        f"dead-lettered {summary.dead_lettered:,}\n"
    )
    letters = engine.store.dead_letters()[known_letters:]
    for letter in letters[:_DEAD_LETTERS_SHOWN]:
        where = []
        if letter.line is not None:
            where.append(f"line {letter.line}")
        if letter.event_id is not None:
            where.append(f"event {letter.event_id}")
        reason = letter.reason.removeprefix(f"line {letter.line}: ") if letter.line is not None else letter.reason
        out.write(f"  {', '.join(where) or 'event without id'}: {reason}\n")
    if len(letters) > _DEAD_LETTERS_SHOWN:
        out.write(f"  ... and {len(letters) - _DEAD_LETTERS_SHOWN:,} more\n")
    return 1 if args.strict and summary.dead_lettered else 0


def cmd_explain(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Why the rules score, route and flag a client, as JSON: each score with its per-rule
    points and band, the condition triggers that hold, the routing with its whole trace.

    --client FILE is a rule-test case (YAML or JSON): client, optional ib, trading, events
    (history: {type: deposit, amount: 500, ago: 40d}) and now (--now overrides it; with
    neither, the clock of the machine running the command), played
    as `crmcore test` plays it (on a fresh engine: registration, first deposit, the events
    in time order, a scan at now); the client is explained as the engine then keeps them. With
    --events FILE the events are processed first and the client named by the case's
    client.id is explained as the engine keeps them, at --now (default: the time of their
    latest decision; the case's own now is not used).
    Exit status 1 on any error (rules, case file, events file, unknown client)."""
    from crmcore.case import CaseError, explain_case, load_case

    rules = _load(args.rules, err)
    if rules is None:
        return 1
    if args.now is not None:
        _moment(args.now)  # a bad --now is the command's error, said before the case is read
    try:
        case = load_case(args.client, now=args.now)
        if case.now is None and args.events is None:  # a host: the machine's clock, as scan
            case = dataclasses.replace(case, now=_moment(None))
        if args.events is None:
            result = explain_case(rules, case)
        else:
            result = _explain_events(rules, case, args, err)
    except CaseError as error:
        raise _Failure(str(error)) from None
    json.dump(result, out, indent=2, default=str)
    out.write("\n")
    return 0


def _explain_events(rules: RuleSet, case: Case, args: argparse.Namespace, err: TextIO) -> dict[str, Any]:
    from crmcore.engine import Engine
    from crmcore.events import read_events

    client_id = case.client_id
    if client_id is None:
        raise _Failure(f"{case.source}: client.id is required with --events (the client to explain)")
    events = _events_file(args.events)
    engine = Engine(rules)
    try:
        summary = engine.handle_many(read_events(events, rules), keep_results=False)
    except (OSError, UnicodeDecodeError) as error:
        raise _Failure(f"{args.events}: cannot read the events: {error}") from None
    if summary.dead_lettered:
        err.write(f"note: {args.events}: {summary.dead_lettered} event(s) dead-lettered ('crmcore run' lists them)\n")
    if engine.store.client(client_id) is None:
        raise _Failure(f"{args.events}: client {client_id!r} (client.id in {case.source}) is not among the events")
    return engine.explain(client_id, now=_moment(args.now) if args.now else None)


def cmd_test(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Run rule tests: the *_test.yaml files under each PATH (a file named directly is taken
    whatever its name). Each case runs on a fresh engine and its expectations (score, band,
    route, triggers, notifications) are checked; every failure is printed with expected vs
    actual and the case's explain trace, and the last line is `N passed, M failed`.

    --run REGEX runs the cases whose name (or file::name) it matches; --junit FILE writes
    JUnit XML; --coverage lists every score rule, band, routing rule and trigger no case
    exercised; --min-coverage P fails below P percent (and implies --coverage).
    Exit status 1 on any failure or broken test file, when no test ran, or below
    --min-coverage; 0 otherwise."""
    import re

    from crmcore.ruletest import coverage, junit_xml, run_tests

    try:
        select = re.compile(args.select) if args.select is not None else None
    except re.error as error:
        raise _Failure(f"--run {args.select!r} is not a regular expression: {error}") from None
    if args.min_coverage is not None and not 0 <= args.min_coverage <= 100:
        raise _Failure(f"--min-coverage {args.min_coverage:g} is not a percentage (0 to 100)")
    report = run_tests(args.paths, select)
    for outcome in report.outcomes:
        if outcome.passed:
            if args.verbose:
                assert outcome.test is not None
                out.write(f"PASS {outcome.test.location}: {outcome.test.name}\n")
        else:
            out.write(outcome.render() + "\n")
    if args.junit is not None:
        try:
            Path(args.junit).write_text(junit_xml(report), encoding="utf-8")
        except OSError as error:
            raise _Failure(f"{args.junit}: cannot write the JUnit report: {error.strerror or error}") from None
    below = False
    if args.coverage or args.min_coverage is not None:
        covered = coverage(report.outcomes)
        out.write(covered.render())
        below = args.min_coverage is not None and covered.percent < args.min_coverage
        if below:
            out.write(f"coverage {covered.percent:.1f}% is below --min-coverage {args.min_coverage:g}%\n")
    ran = len(report.outcomes)
    if ran == 0:
        out.write("no rule test ran" + (f" (--run {args.select!r} matched no case)" if select is not None else
                                         " (no *_test.yaml file found)") + "\n")
    out.write(report.summary + "\n")
    return 1 if report.failed or ran == 0 or below else 0


_DEFAULT_DB = "sqlite:///crmcore.db"


def _db_url(url: str) -> URL:
    """The URL of ``--db`` (see :func:`_open_store` for a SQLite file that is not there)."""
    import sqlalchemy as sa

    try:
        return sa.make_url(url)
    except sa.exc.ArgumentError:
        raise _Failure(f"--db {url!r} is not a database URL (such as {_DEFAULT_DB} or postgresql+psycopg://user@host/db)") from None


def _sqlite_file_missing(url: URL) -> bool:
    database = url.database
    return bool(url.get_backend_name() == "sqlite" and database and database != ":memory:"
                and not database.startswith("file:") and not Path(database).exists())


@contextlib.contextmanager
def _database_errors(url: URL) -> Iterator[None]:
    """Turn a driver that is missing, a database that cannot be reached, or a --schema or
    --prefix the store refuses (:class:`StoreConfigError`) into a one-line error."""
    import sqlalchemy as sa

    from crmcore.storage.base import StoreConfigError

    shown = url.render_as_string(hide_password=True)
    try:
        yield
    except StoreConfigError as error:
        raise _Failure(str(error)) from None
    except ModuleNotFoundError as error:
        extra = " (pip install 'crmcore[postgres]')" if url.get_backend_name() == "postgresql" else ""
        raise _Failure(f"{shown}: the database driver is not installed: {error.name}{extra}") from None
    except sa.exc.NoSuchModuleError as error:
        raise _Failure(f"{shown}: {error}") from None
    except sa.exc.DBAPIError as error:
        from crmcore.storage.sql import first_line

        raise _Failure(f"{shown}: {first_line(error)}") from None


def _add_database(parser: argparse.ArgumentParser, default: str = _DEFAULT_DB, help: str | None = None) -> None:
    """``--db`` and where crmcore's tables are in it (``--schema``, ``--prefix``): every
    command that opens a database takes all three, so that it finds the tables
    ``crmcore db upgrade --schema S --prefix P`` made."""
    parser.add_argument("--db", default=default, metavar="URL", help=help or f"the database (default {default})")
    parser.add_argument("--schema", metavar="S", help="the schema of crmcore's tables (PostgreSQL)")
    parser.add_argument("--prefix", default="crm_", metavar="P", help="the prefix of their names (default crm_)")


def _add_batch(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--batch", type=_positive, metavar="N",
        help=f"{what} per transaction, a savepoint each (default: 500 on SQLite, 1 on PostgreSQL; "
             "a batch holds the routing lock, so batched workers take turns)",
    )


def _positive(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return number


def _open_store(args: argparse.Namespace, *, create: bool = False) -> SqlStore:
    """The SqlStore of ``--db``, ``--schema`` and ``--prefix`` (its tables created in an empty
    database). Only commands that write events (``create``) may start a new SQLite file; for
    the others a file that is not there is a typo to report, not a database to make."""
    from crmcore.storage import SchemaVersionError, SqlStore

    url = _db_url(args.db)
    if not create and _sqlite_file_missing(url):
        raise _Failure(f"{args.db}: no such database file (crmcore run or crmcore demo makes one)")
    with _database_errors(url):
        try:
            store = SqlStore(url, schema=args.schema, prefix=args.prefix)
        except SchemaVersionError as error:
            raise _Failure(str(error)) from None
    args.opened.callback(store.close)  # closed as the command ends (a SQLite file checkpointed)
    return store


def cmd_db_upgrade(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Create crmcore's tables in the database, or bring them to this crmcore's version
    (a no-op when they are there). With --schema (PostgreSQL) the tables go in that schema,
    which is created when missing; --prefix names them (default crm_)."""
    from crmcore.storage.migrate import SchemaVersionError, current_version, upgrade

    url = _db_url(args.db)
    shown = url.render_as_string(hide_password=True)
    with _database_errors(url):
        before = None if _sqlite_file_missing(url) else current_version(url, schema=args.schema, prefix=args.prefix)
        try:
            after = upgrade(url, schema=args.schema, prefix=args.prefix)
        except SchemaVersionError as error:
            raise _Failure(str(error)) from None
    if before == after:
        out.write(f"{shown}: already at revision {after}\n")
    else:
        out.write(f"{shown}: upgraded from {before or 'an empty database'} to revision {after}\n")
    return 0


def cmd_db_version(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Print the revision of crmcore's tables in the database and the one this crmcore expects.
    Exit status 0 when they are equal, 1 otherwise (no tables, another revision)."""
    from crmcore.storage.migrate import SchemaVersionError, check_version, current_version
    from crmcore.storage.schema import SCHEMA_VERSION

    url = _db_url(args.db)
    if _sqlite_file_missing(url):
        raise _Failure(f"{url.database}: no such database file")
    with _database_errors(url):
        current = current_version(url, schema=args.schema, prefix=args.prefix)
        status: str
        problem: str | None = None
        try:
            status = check_version(url, schema=args.schema, prefix=args.prefix)
        except SchemaVersionError as error:
            status, problem = "mismatch", str(error)
    out.write(f"current:  {current or 'none'}\nexpected: {SCHEMA_VERSION}\n")
    if problem is not None:
        err.write(f"crmcore db version: {problem}\n")
    elif status == "empty":
        out.write(f"no crmcore tables: run `crmcore db upgrade --db {url.render_as_string(hide_password=True)}`\n")
    return 0 if status == "ok" else 1


def _moment(text: str | None, option: str = "--now") -> datetime:
    """An ISO 8601 time (naive = UTC); without one, the clock of the machine running the
    command (the CLI is a host: the engine itself never reads a clock)."""
    if text is None:
        return datetime.now(UTC)
    try:
        return to_moment(text, option)
    except ValueError as err:
        raise _Failure(str(err)) from None


def cmd_scan(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Time-based checks on the database at --now (default: the current time): first-contact
    SLA breaches (alert or reassign) and the condition triggers of every client (queue items,
    notifications, items resolved). Prints what happened."""
    from crmcore.engine import Engine

    rules = _load(args.rules, err)
    if rules is None:
        return 1
    now = _moment(args.now)
    engine = Engine(rules, store=_open_store(args))
    try:
        decisions = engine.scan(now, batch=args.batch)
    except RuleError as error:  # a condition trigger SQL cannot express: named, with a caret
        _render_rule_error(error, err)
        return 1
    breaches = Counter(d.sla_breach for d in decisions if d.cause == "sla_breach")
    fired = Counter(name for d in decisions for name in d.fired)
    out.write(f"scan at {now.isoformat().replace('+00:00', 'Z')}: "
              f"{sum(breaches.values())} SLA breach(es) ({breaches['alert']} alerted, {breaches['reassign']} reassigned), "
              f"{sum(fired.values())} trigger firing(s)\n")
    for name, count in sorted(fired.items()):
        out.write(f"  {name}: {count}\n")
    return 0


def cmd_queue(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """A queue's open items, highest priority first: client, priority, trigger, actions, desk,
    agent and age (at --now, default the current time). --as VIEWER shows what that agent,
    manager or admin may see (refused otherwise); without it, everything."""
    from crmcore.serialize import jsonable
    from crmcore.views import PermissionDenied, View

    store = _open_store(args)
    now = _moment(args.now)
    try:
        entries = View(store, args.viewer).queue(args.name, desk=args.desk, now=now)
    except PermissionDenied as error:
        raise _Failure(str(error)) from None
    if args.format == "json":
        json.dump(jsonable([entry.as_dict() for entry in entries]), out, indent=2)
        out.write("\n")
        return 0
    out.write(f"{args.name}: {len(entries)} open item(s)\n")
    for entry in entries:
        age = entry.age.total_seconds() / 86400 if entry.age is not None else 0.0
        client = entry.client
        out.write(f"  {entry.priority:>10g}  {entry.client_id} ({client.get('country') or '-'}, {client.get('stage')}, "
                  f"balance {client.get('balance')})  {entry.trigger}  desk {entry.desk or '-'}  "
                  f"agent {entry.agent_id or '-'}  {age:.1f}d  {'; '.join(entry.actions)}\n")
    return 0


def cmd_backtest(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Replay the events under the OLD and the NEW rules (in memory, each event at its own
    time; no database is touched) and print what the change does: assignments per desk and
    agent, band distributions, triggers fired, and every client whose route differs, with
    both routing traces. Rows whose count moved are marked *. Scans (SLA checks, condition
    triggers of every client) run at each --scan-every boundary the event times cross
    (default 1d: midnight UTC) and at the last event; their firings, SLA breaches and
    reassignments are counted with the events'.

    Exit status: 0 (also when things change); 1 when a rule set does not load, the events
    file is missing or unreadable, or none of its events could be handled."""
    from crmcore.backtest import backtest, scan_interval
    from crmcore.serialize import jsonable

    if args.limit < 0:
        raise _Failure(f"--limit {args.limit}: give a number of route changes to show, 0 or more")
    try:
        every = scan_interval(args.scan_every)
    except ValueError as error:
        raise _Failure(f"--scan-every {args.scan_every}: {error}") from None
    old = _load([args.old], err)
    new = _load([args.new], err)
    if old is None or new is None:
        return 1
    events = _events_file(args.events)
    try:
        report = backtest(old, new, events, scan_every=every)
    except (OSError, UnicodeDecodeError) as error:
        raise _Failure(f"{args.events}: cannot read the events: {error}") from None
    if args.format == "json":
        json.dump(jsonable(report.as_dict()), out, indent=2)
        out.write("\n")
    else:
        out.write(report.render(traces=not args.no_traces, limit=args.limit))
    if report.old.handled == 0 and report.new.handled == 0:
        raise _Failure(f"{args.events}: no event could be handled (dead-lettered: {report.old.dead_lettered:,}): "
                       "is it JSON Lines, one event per line?")
    return 0


def cmd_demo(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """The whole product on a synthetic broker: generate 90 days of a broker's events
    (registrations, KYC, e-mails, calls, deposits, withdrawals, trades, snapshots), process
    them with the demo rules (the example broker) into a fresh SQLite file (--db; a file an
    earlier demo made is replaced, any other is refused unless --force), scan at the end of the period, print the funnel, desks and the top of
    each queue, and write the HTML report (-o)."""
    from crmcore import demo
    from crmcore.report import FUNNEL_DAYS, dashboard, html_report

    if args.clients is None:
        args.clients = demo.DEFAULT_CLIENTS
    if not args.clients > 0:
        raise _Failure(f"--clients {args.clients}: give a positive number of clients")
    report = Path(args.output)
    if not report.parent.is_dir():
        raise _Failure(f"-o {args.output}: the folder {report.parent} does not exist")
    url = _db_url(args.db).render_as_string(hide_password=False)
    out.write(f"crmcore demo: {args.clients:,} clients over 90 days into {args.db}\n")
    with _database_errors(_db_url(args.db)):
        try:
            run = demo.run(args.clients, url, seed=args.seed, progress=err if err.isatty() else None, force=args.force,
                           schema=args.schema, prefix=args.prefix)
        except demo.DemoError as error:
            raise _Failure(str(error)) from None
    args.opened.callback(run.store.close)
    demo.render(run, out)
    data = dashboard(run.store, *demo.MONTH, as_of=demo.END)  # the targets the engine stored
    month = f"{demo.MONTH[0]:%B %Y}"
    for title, rows in (
        (f"funnel of the clients registered in the {FUNNEL_DAYS} days", data["funnel"]),
        (f"KPIs by desk, {month}", data["kpis"]),
        (f"acquisition by source, {month}: campaign cost per FTD (cpa)", data["acquisition"]),
        (f"leaderboard: FTDs per sales agent, {month}, against the monthly target", data["leaderboard"][:10]),
        (f"capacity per desk at {demo.END:%Y-%m-%d}", data["capacity"]),
    ):
        out.write(f"\n{title}\n")
        _report_rows(rows, out, "table")
    _write_report(report, html_report(run.store, data, title="crmcore demo broker"))
    out.write(f"\nreport: {report}\n")
    return 0


def cmd_report(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Write a self-contained HTML dashboard of the database (--db) as one file with inline
    CSS and SVG (no network): KPI tiles for [--from, --to) (default: the 30 whole UTC days
    that end with the latest event's day), the FTD funnel and weekly cohort conversion, net deposits per week, KPIs
    per desk, the FTD leaderboard of the sales agents against the targets (the rule set's the
    engine stored; --rules to compare with another's), capacity per desk, and the retention
    queues with reasons and actions."""
    from datetime import UTC, datetime, time, timedelta

    from crmcore.report import dashboard, html_report

    store = _open_store(args)
    latest = store.latest_event_at()
    if latest is None:
        raise _Failure(f"{args.db}: no events yet: nothing to report")
    # by default the 30 whole days (UTC) that end with the latest event's day
    end = _when(args.end, "--to") if args.end else datetime.combine(latest.date() + timedelta(days=1), time(), UTC)
    start = _when(args.start, "--from") if args.start else end - timedelta(days=30)
    if start >= end:
        raise _Failure(f"--from {args.start} is not before the end of the period ({end:%Y-%m-%d %H:%M} UTC)")
    targets: Sequence[Any] | None = None  # the store's
    if args.rules:
        rules = _load([args.rules], err)
        if rules is None:
            return 1
        targets = rules.targets
    with _kpi_errors():
        data = dashboard(store, start, end, targets=targets)
    report = Path(args.output)
    _write_report(report, html_report(store, data))
    out.write(f"report: {report}\n")
    return 0


def _write_report(path: Path, page: str) -> None:
    try:
        path.write_text(page, encoding="utf-8")
    except OSError as error:
        raise _Failure(f"{path}: cannot write the report: {error.strerror or error}") from None


def _when(text: str, option: str) -> datetime:
    """``--from``/``--to``/``--as-of``: an ISO 8601 date or time (naive = UTC)."""
    return _moment(text, option)


def _report_rows(rows: Sequence[dict[str, Any]], out: TextIO, fmt: str) -> None:
    """Rows as an aligned text table, JSON (exact decimals as numbers) or CSV."""
    import csv
    import re
    from decimal import Decimal

    if fmt == "json":
        def exact(value: Any) -> Any:
            if isinstance(value, Decimal):
                return f"\x00{value}\x00"
            if isinstance(value, dict):
                return {k: exact(v) for k, v in value.items()}
            return value

        text = json.dumps([exact(row) for row in rows], indent=2)
        out.write(re.sub(r'"\\u0000(.*?)\\u0000"', r"\1", text) + "\n")
        return
    columns = list(dict.fromkeys(name for row in rows for name in row))
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
        return

    def shown(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.4f}"
        if isinstance(value, Decimal) and value.as_tuple().exponent < -2:  # type: ignore[operator]
            return str(value.quantize(Decimal("0.01")))
        return str(value)

    if not rows:
        out.write("(nothing in this period)\n")
        return
    if len(rows) == 1 and len(columns) > 8:  # one row of many figures: a figure per line
        width = max(map(len, columns))
        for name in columns:
            out.write(f"{name:<{width}}  {shown(rows[0][name])}\n")
        return
    cells = [[shown(row.get(name)) for name in columns] for row in rows]
    widths = [max(len(name), *(len(line[i]) for line in cells)) for i, name in enumerate(columns)]
    out.write("  ".join(name.ljust(w) for name, w in zip(columns, widths, strict=True)).rstrip() + "\n")
    for line in cells:
        out.write("  ".join(cell.rjust(w) if cell[:1].isdigit() or cell[:1] == "-" else cell.ljust(w)
                            for cell, w in zip(line, widths, strict=True)).rstrip() + "\n")


@contextlib.contextmanager
def _kpi_errors() -> Iterator[None]:
    from crmcore.kpi import KpiError

    try:
        yield
    except KpiError as error:
        raise _Failure(str(error)) from None


def cmd_kpi(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """KPIs of SPEC §6 over [--from, --to) (UTC; a date means its midnight), grouped with --by
    (agent, team, desk, source, country, ib, campaign); deposits and revenue credited to the
    agent who held the client when they happened. --as-of (default: the latest event) bounds
    conversion, lifetime value and contacts. --metrics picks some (comma-separated)."""
    from crmcore import kpi

    start, end = _when(args.start, "--from"), _when(args.end, "--to")
    as_of = _when(args.as_of, "--as-of") if args.as_of else None
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    with _kpi_errors():
        kpi.check_grouping(args.by)
        kpi.check_metrics(metrics)
        rows = kpi.compute(_open_store(args), start, end, metrics, by=args.by, as_of=as_of)
    _report_rows(rows, out, args.format)
    return 0


def cmd_funnel(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """The funnel registered -> kyc_submitted -> kyc_approved -> funded of the clients
    registered in [--from, --to), by --cohort (week or month of registration) and --by: each
    stage's count, conversion from the previous stage and from registration, and the time
    from the previous stage (median and p90, days)."""
    from crmcore.kpi.funnel import funnel

    start, end = _when(args.start, "--from"), _when(args.end, "--to")
    as_of = _when(args.as_of, "--as-of") if args.as_of else None
    with _kpi_errors():
        rows = funnel(_open_store(args), start, end, by=args.by, cohort=args.cohort, as_of=as_of)
    _report_rows(rows, out, args.format)
    return 0


def cmd_leaderboard(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Agents (or teams, desks) ranked by --metric over [--from, --to), best first, ties by
    id; attainment against the targets (scaled to the period) of the rule set the engine
    last ran with on this database, or of --rules when given."""
    from crmcore.kpi.leaderboard import leaderboard

    start, end = _when(args.start, "--from"), _when(args.end, "--to")
    as_of = _when(args.as_of, "--as-of") if args.as_of else None
    targets: Sequence[Any] | None = None  # the store's
    if args.rules:
        rules = _load(args.rules, err)
        if rules is None:
            return 1
        targets = rules.targets
    with _kpi_errors():
        rows = leaderboard(_open_store(args), start, end, args.metric, by=args.by, as_of=as_of, targets=targets)
    _report_rows(rows, out, args.format)
    return 0


def cmd_capacity(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Capacity per desk at --as-of (default: the latest event): open clients, capacity,
    utilisation, incoming clients per day over the last 7 days, and the agents needed to stay
    under 80% utilisation for the next 30 days at that rate."""
    from crmcore.kpi.capacity import capacity

    as_of = _when(args.as_of, "--as-of") if args.as_of else None
    with _kpi_errors():
        rows = capacity(_open_store(args), as_of=as_of, desk=args.desk)
    _report_rows(rows, out, args.format)
    return 0


def _add_kpi_commands(commands: Any, formatter: type[argparse.HelpFormatter]) -> None:
    from crmcore.kpi import GROUPINGS
    from crmcore.kpi.funnel import COHORTS
    from crmcore.kpi.leaderboard import LEVELS

    def view(name: str, command: Any, summary: str, period: bool = True) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = commands.add_parser(
            name, help=summary, description=inspect.cleandoc(command.__doc__ or ""), formatter_class=formatter
        )
        _add_database(sub)
        if period:
            sub.add_argument("--from", dest="start", required=True, metavar="D", help="period start, included (ISO 8601)")
            sub.add_argument("--to", dest="end", required=True, metavar="D", help="period end, excluded (ISO 8601)")
        sub.add_argument("--as-of", dest="as_of", metavar="T", help="the report's time (default: the latest event)")
        sub.add_argument("--format", choices=("table", "json", "csv"), default="table")
        sub.set_defaults(run=command)
        return sub

    grouping = f"group by: {', '.join(GROUPINGS)}"
    kpi = view("kpi", cmd_kpi, "KPIs over a period")
    kpi.add_argument("--by", metavar="G", help=grouping)
    kpi.add_argument("--metrics", metavar="M,...", help="only these KPIs (default: all)")
    funnel = view("funnel", cmd_funnel, "the registration-to-FTD funnel")
    funnel.add_argument("--by", metavar="G", help=grouping)
    funnel.add_argument("--cohort", choices=COHORTS, help="split by week or month of registration")
    board = view("leaderboard", cmd_leaderboard, "agents or teams ranked by a KPI, with targets")
    board.add_argument("--metric", required=True, metavar="M", help="the KPI to rank by")
    board.add_argument("--by", default="agent", choices=LEVELS, help="rank agents (default), teams or desks")
    board.add_argument("--rules", nargs="+", metavar="PATH",
                       help="rule files whose targets to compare with (default: the targets in the database)")
    capacity = view("capacity", cmd_capacity, "capacity planning per desk", period=False)
    capacity.add_argument("--desk", metavar="D", help="only this desk")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crmcore", description="Sales-and-retention rules for forex/CFD brokers.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = commands.add_parser("check", help="load and check rule files", description=cmd_check.__doc__)
    check.add_argument("paths", nargs="+", metavar="PATH", help="rule files or folders")
    check.add_argument("--format", choices=("text", "json"), default="text")
    check.set_defaults(run=cmd_check)
    schema = commands.add_parser("schema", help="print a JSON Schema", description=cmd_schema.__doc__)
    schema.add_argument("what", choices=("events",), help="what to describe")
    schema.set_defaults(run=cmd_schema)
    formatter = argparse.RawDescriptionHelpFormatter
    fmt = commands.add_parser("fmt", help="convert rule files between YAML and .crm", description=cmd_fmt.__doc__)
    fmt.add_argument("path", metavar="PATH", help="a rule file (.yaml, .yml, .crm) or a folder of them")
    fmt.add_argument("--to", required=True, choices=("crm", "yaml"), help="the syntax to write")
    fmt.add_argument("-o", dest="output", metavar="OUT", help="write here (a folder, when PATH is one)")
    fmt.set_defaults(run=cmd_fmt)
    run = commands.add_parser(
        "run", help="process events and print a summary", description=inspect.cleandoc(cmd_run.__doc__ or ""), formatter_class=formatter
    )
    run.add_argument("rules", nargs="+", metavar="RULES", help="rule files or folders")
    run.add_argument("--events", required=True, metavar="FILE", help="events, one JSON object per line")
    run.add_argument("--decisions", metavar="OUT.jsonl", help="write each event's result as one JSON line")
    run.add_argument("--strict", action="store_true", help="exit 1 when any event was dead-lettered")
    _add_database(run)
    _add_batch(run, "events")
    run.set_defaults(run=cmd_run)
    explain = commands.add_parser(
        "explain", help="explain a client's scores, routing and triggers as JSON",
        description=inspect.cleandoc(cmd_explain.__doc__ or ""), formatter_class=formatter,
    )
    explain.add_argument("rules", nargs="+", metavar="RULES", help="rule files or folders")
    explain.add_argument("--client", required=True, metavar="FILE", help="the client, as a rule-test case (YAML or JSON)")
    explain.add_argument("--events", metavar="FILE", help="process these events first, then explain client.id")
    explain.add_argument("--now", metavar="T", help="the time of the evaluation (ISO 8601); overrides the case's now")
    explain.set_defaults(run=cmd_explain)
    test = commands.add_parser(
        "test", help="run rule tests (*_test.yaml)", description=inspect.cleandoc(cmd_test.__doc__ or ""),
        formatter_class=formatter,
    )
    test.add_argument("paths", nargs="+", metavar="PATH", help="rule-test files or folders")
    test.add_argument("--run", dest="select", metavar="REGEX", help="only the cases whose name matches")
    test.add_argument("--junit", metavar="FILE", help="write a JUnit XML report")
    test.add_argument("--coverage", action="store_true", help="list what no case exercised")
    test.add_argument("--min-coverage", type=float, metavar="P", help="fail when coverage is below P percent")
    test.add_argument("-v", "--verbose", action="store_true", help="also list the cases that pass")
    test.set_defaults(run=cmd_test)
    scan = commands.add_parser(
        "scan", help="SLA checks and condition triggers at a time", description=inspect.cleandoc(cmd_scan.__doc__ or ""),
        formatter_class=formatter,
    )
    scan.add_argument("rules", nargs="+", metavar="RULES", help="rule files or folders")
    _add_database(scan)
    scan.add_argument("--now", metavar="T", help="the time of the scan (ISO 8601; default: the current time)")
    _add_batch(scan, "clients")
    scan.set_defaults(run=cmd_scan)
    queue = commands.add_parser(
        "queue", help="a queue's open items", description=inspect.cleandoc(cmd_queue.__doc__ or ""), formatter_class=formatter,
    )
    queue.add_argument("name", metavar="NAME", help="the queue")
    _add_database(queue)
    queue.add_argument("--desk", metavar="D", help="only this desk's items")
    queue.add_argument("--as", dest="viewer", metavar="VIEWER", help="what this agent, manager or admin may see")
    queue.add_argument("--now", metavar="T", help="the time ages are measured at (default: the current time)")
    queue.add_argument("--format", choices=("table", "json"), default="table")
    queue.set_defaults(run=cmd_queue)
    backtest = commands.add_parser(
        "backtest", help="what a rule change would have done to past events",
        description=inspect.cleandoc(cmd_backtest.__doc__ or ""), formatter_class=formatter,
    )
    backtest.add_argument("old", metavar="OLD", help="the rules in force (file or folder)")
    backtest.add_argument("new", metavar="NEW", help="the changed rules (file or folder)")
    backtest.add_argument("--events", required=True, metavar="FILE", help="events, one JSON object per line")
    backtest.add_argument("--format", choices=("text", "json"), default="text")
    backtest.add_argument("--limit", type=int, default=50, metavar="N", help="route changes shown as text (default 50)")
    backtest.add_argument("--no-traces", action="store_true", help="leave the routing traces out of the text")
    backtest.add_argument("--scan-every", default="1d", metavar="DURATION",
                          help="scan at each boundary of this interval (e.g. 1d, 6h; default 1d); 0 or none: no scans")
    backtest.set_defaults(run=cmd_backtest)
    demo = commands.add_parser(
        "demo", help="the whole product on a synthetic broker", description=inspect.cleandoc(cmd_demo.__doc__ or ""),
        formatter_class=formatter,
    )
    demo.add_argument("--clients", type=int, metavar="N", help="clients to generate (default 2,000: crmcore.demo.DEFAULT_CLIENTS)")
    _add_database(demo, "sqlite:///crmcore-demo.db",
                  "where to process them (default sqlite:///crmcore-demo.db; a file an earlier demo made is replaced)")
    demo.add_argument("-o", "--output", default="crmcore-report.html", metavar="FILE",
                      help="the HTML report (default crmcore-report.html)")
    demo.add_argument("--seed", type=int, default=7, help="the generator's seed (default 7)")
    demo.add_argument("--force", action="store_true", help="replace a SQLite file the demo did not make")
    demo.set_defaults(run=cmd_demo)
    report = commands.add_parser(
        "report", help="write an HTML dashboard", description=inspect.cleandoc(cmd_report.__doc__ or ""),
        formatter_class=formatter,
    )
    _add_database(report)
    report.add_argument("-o", "--output", required=True, metavar="FILE.html", help="the report to write")
    report.add_argument("--from", dest="start", metavar="D", help="the period's start (default: --to minus 30 days)")
    report.add_argument("--to", dest="end", metavar="D", help="the period's end, excluded (default: just after the latest event)")
    report.add_argument("--rules", metavar="PATH",
                        help="the rules whose targets the leaderboard shows (default: the targets in the database)")
    report.set_defaults(run=cmd_report)
    _add_kpi_commands(commands, formatter)
    db = commands.add_parser("db", help="create or upgrade crmcore's tables in a database")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="DB_COMMAND")
    for name, command, summary in (
        ("upgrade", cmd_db_upgrade, "create crmcore's tables or bring them to this version"),
        ("version", cmd_db_version, "print the database's revision and the expected one"),
    ):
        sub = db_commands.add_parser(
            name, help=summary, description=inspect.cleandoc(command.__doc__ or ""), formatter_class=formatter
        )
        _add_database(sub)
        sub.set_defaults(run=command)
    return parser


# What a database failure in the middle of a command leaves (read-only commands: nothing)
_AFTER_DATABASE_FAILURE = {
    "run": "nothing was half-applied (the events committed before it are kept); run the same command "
           "again when the database is back: what was done counts as duplicates",
    "scan": "nothing was half-applied (each client's checks are atomic; the batches committed before it are kept)",
    "demo": "nothing was half-applied; run the demo again when the database is back (on SQLite it replaces "
            "its own file; elsewhere give it an empty database)",
}


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run one command; ``out`` and ``err`` default to stdout and stderr. Returns the exit status."""
    import sqlalchemy as sa

    from crmcore.storage import SchemaVersionError, StoreUnavailable

    args = build_parser().parse_args(argv)
    errors = err or sys.stderr
    command = " ".join(["crmcore", args.command, *([args.db_command] if args.command == "db" else [])])
    after = _AFTER_DATABASE_FAILURE.get(args.command, "nothing was changed; run the command again when the database is back")
    try:
        with contextlib.ExitStack() as args.opened:  # the stores the command opens
            code: int = args.run(args, out or sys.stdout, errors)
    except (_Failure, SchemaVersionError) as failure:
        message = str(failure)
    except StoreUnavailable as failure:  # the engine's own: the database failed, not the input
        message = f"{failure}; {after}"
    except sa.exc.DBAPIError as failure:  # a query outside a unit of work (KPIs, reports) failed
        from crmcore.storage.sql import first_line

        message = f"the database failed: {first_line(failure)}; {after}"
    else:
        return code
    errors.write(f"{command}: error: {message}\n")
    return 1


def entry() -> None:
    """Console-script entry point."""
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:  # `crmcore schema events | head`: the reader left, which is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
