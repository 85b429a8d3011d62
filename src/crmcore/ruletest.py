"""Rule tests (SPEC §9): ``*_test.yaml`` files that state a clock, a client and what the rules
must make of them — for ``crmcore test`` and the pytest plugin.

A test file::

    rules: ../rules                 # relative to this file (a list of paths works too)
    now: 2026-03-01T12:00:00Z       # the cases' clock (a case may give its own `now`)
    cases:
      - name: German lead goes to the DACH desk
        client: {country: DE, language: de, registered_at: 2026-03-01T10:00:00Z}
        ib: {id: IB1, quality: 90}                    # optional
        trading: {balance: 900, margin_level: 120}    # optional: the last account snapshot
        events: [{type: trade, volume: 1, pnl: -50, ago: 3d}]   # optional history
        expect:                                       # every key optional
          score: {lead: 38}
          band: {lead: cold}
          route: {rule: dach, desk: sales-dach, agent: a04}
          triggers: []                                # exactly these fire
          notifications: [{kind: assigned, recipient: a04}, {kind: assigned_to_team, recipient: m-dach}]

How a case runs (:func:`run_case`), on a fresh :class:`~crmcore.Engine` with a
:class:`~crmcore.MemoryStore` — no other clients, every rotation at its start:

1. The IB (``ib``) is known to the store.
2. The client registers at ``registered_at`` (default: the first event's time, else ``now``)
   with every field the case gives (the record of :func:`crmcore.case.case_context`:
   built-in and schema defaults, ``stage`` implied by the timestamps): scores and
   registration routing see the client as the case describes them.
3. A client the case gives as funded (``ftd_at``) makes the first deposit at ``ftd_at``: a
   ``client_updated`` setting ``ftd_at``, ``ftd_amount`` and the stage, which hands the client
   over by the ``ftd`` rules (it adds no deposit to the activity windows).
4. The ``events`` are handled in time order, as the engine handles events: they change the
   client (``last_*_at``, balance, stage, e-mail counters), a first completed deposit is the
   FTD, ``on:`` triggers fire and condition triggers are re-checked.
5. ``scan(now)``: first-contact SLA checks and the condition triggers.

Then ``score`` and ``band`` are the client's at ``now`` (as the engine then keeps them),
``route`` the client's latest routing (registration, the FTD hand-over, an SLA reassignment),
``triggers`` the triggers that fired during 2-5 (cooldowns allowing), ``notifications``
everything the case notified.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import yaml

from crmcore.case import Case, CaseError, case_context, load_case
from crmcore.engine import Engine
from crmcore.events import ClientRegistered
from crmcore.notify.notification import Notification, client_recipient
from crmcore.rules import RuleError, RuleSet, load_rules
from crmcore.rules.diagnostics import CrmError
from crmcore.rules.values import infer_stage
from crmcore.serialize import jsonable
from crmcore.storage.records import Decision

__all__ = [
    "Coverage", "Outcome", "Report", "RuleTest", "RuleTestError", "coverage", "discover",
    "junit_xml", "load_test_file", "run_case", "run_tests",
]

TEST_FILE_SUFFIXES = ("_test.yaml", "_test.yml")
"""A file whose name ends so is a rule-test file."""

_FILE_KEYS = ("rules", "now", "cases")
_CASE_KEYS = ("name", "client", "ib", "trading", "events", "now", "expect")
_EXPECT_KEYS = ("score", "band", "route", "triggers", "notifications")
_ROUTE_KEYS = ("rule", "desk", "agent", "outcome", "stage", "strategy")
_NOTIFICATION_KEYS = ("kind", "recipient", "trigger")
_TOLERANCE = 1e-9  # expected scores compare numerically, floats within this


class RuleTestError(CrmError):
    """A rule-test file (or one of its cases) that cannot be read or run: ``file:line: message``."""

    def __init__(self, path: str | Path, line: int | None, message: str):
        self.path = str(path)
        self.line = line
        self.message = message
        super().__init__(f"{self.path}:{line}: {message}" if line is not None else f"{self.path}: {message}")


# --- reading ------------------------------------------------------------------------------------


def is_test_file(path: Path) -> bool:
    return path.name.endswith(TEST_FILE_SUFFIXES)


def discover(paths: Iterable[str | Path]) -> list[Path]:
    """The rule-test files under ``paths``: a folder's ``*_test.yaml`` (and ``*_test.yml``)
    files at any depth, sorted; a file named directly is taken whatever its name. Raises
    :class:`RuleTestError` for a path that does not exist."""
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and is_test_file(p))
        elif path.is_file():
            found.append(path)
        else:
            raise RuleTestError(path, None, "no such file or folder")
    return list(dict.fromkeys(found))


@dataclass(frozen=True)
class Expect:
    """What a case expects; ``None`` where it expects nothing."""

    score: Mapping[str, float] | None = None
    band: Mapping[str, str | None] | None = None
    route: Mapping[str, str | None] | None = None
    triggers: tuple[str, ...] | None = None
    notifications: tuple[Mapping[str, str], ...] | None = None


@dataclass(frozen=True)
class RuleTest:
    """One case of a test file, checked and ready to run."""

    path: Path
    line: int
    name: str
    rules: RuleSet
    case: Case
    expect: Expect

    @property
    def location(self) -> str:
        return f"{self.path}:{self.line}"

    @property
    def id(self) -> str:
        """``file::name``: what ``--run`` and JUnit name the case by."""
        return f"{self.path}::{self.name}"


class _Lines:
    """Line numbers (1-based) of a YAML document's nodes, by path of keys and indexes."""

    def __init__(self, node: yaml.Node | None):
        self.lines: dict[tuple[Any, ...], int] = {}
        if node is not None:
            self._walk(node, ())

    def _walk(self, node: yaml.Node, path: tuple[Any, ...]) -> None:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    self.lines[(*path, key.value, "<key>")] = key.start_mark.line + 1
                    self._walk(value, (*path, key.value))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._walk(item, (*path, index))

    def key(self, *path: Any) -> int | None:
        """The line of the key at ``path`` (else of its value, else of the nearest parent)."""
        found = self.lines.get((*path, "<key>"))
        return found if found is not None else self.at(*path)

    def at(self, *path: Any) -> int | None:
        while path not in self.lines and path:
            path = path[:-1]
        return self.lines.get(path)


def load_test_file(path: str | Path, rule_sets: dict[tuple[str, ...], RuleSet] | None = None) -> list[RuleTest]:
    """The cases of one test file. ``rule_sets`` caches rule sets by their resolved paths
    across files. Raises :class:`RuleTestError` (with the file and line) for a file that
    cannot be read, is not valid YAML, has an unknown key, names rules that do not load, or
    has a case or an expectation that makes no sense for its rules."""
    path = Path(path)
    cache = rule_sets if rule_sets is not None else {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise RuleTestError(path, None, f"cannot read the file: {err}") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        problem = getattr(err, "problem", None) or str(err)
        raise RuleTestError(path, mark.line + 1 if mark is not None else None, f"not valid YAML: {problem}") from None
    finally:
        loader.dispose()
    lines = _Lines(node)
    if not isinstance(data, Mapping):
        raise RuleTestError(path, lines.at(), "a rule-test file is a mapping with 'rules', 'now' and 'cases'")
    for key in data:
        if key not in _FILE_KEYS:
            raise RuleTestError(path, lines.key(key), f"unknown key {key!r} (a test file has {', '.join(_FILE_KEYS)})")
    rules = _rules(path, data.get("rules"), lines, cache)
    cases = data.get("cases")
    if not isinstance(cases, list) or not cases:
        raise RuleTestError(path, lines.key("cases"), "'cases' must be a non-empty list of cases")
    tests = []
    names: set[str] = set()
    for index, entry in enumerate(cases):
        test = _test(path, index, entry, data.get("now"), rules, lines)
        if test.name in names:
            raise RuleTestError(path, test.line, f"a second case named {test.name!r}")
        names.add(test.name)
        tests.append(test)
    return tests


def _rules(path: Path, given: Any, lines: _Lines, cache: dict[tuple[str, ...], RuleSet]) -> RuleSet:
    line = lines.key("rules")
    if given is None:
        raise RuleTestError(path, line, "'rules' is required: the rule files or folders to test, relative to this file")
    listed = given if isinstance(given, list) else [given]
    if not listed or not all(isinstance(p, str) and p for p in listed):
        raise RuleTestError(path, line, "'rules' must be a path or a list of paths")
    resolved = [Path(os.path.normpath(path.parent / p)) for p in listed]
    for rules_path in resolved:
        if not rules_path.exists():
            raise RuleTestError(path, line, f"rules: no such file or folder: {rules_path}")
    key = tuple(str(p.resolve()) for p in resolved)
    if key not in cache:
        try:
            cache[key] = load_rules(resolved)
        except RuleError as err:
            raise RuleTestError(path, line, f"the rules do not load:\n{err.render()}") from None
    return cache[key]


def _test(path: Path, index: int, entry: Any, file_now: Any, rules: RuleSet, lines: _Lines) -> RuleTest:
    line = lines.at("cases", index) or 1
    if not isinstance(entry, Mapping):
        raise RuleTestError(path, line, "a case must be a mapping with 'name', 'client' and 'expect'")
    for key in entry:
        if key not in _CASE_KEYS:
            raise RuleTestError(path, lines.key("cases", index, key), f"unknown case key {key!r} (a case has {', '.join(_CASE_KEYS)})")
    name = entry.get("name")
    if name is None:
        name = f"case {index + 1}"
    elif not isinstance(name, str) or not name.strip():
        raise RuleTestError(path, lines.key("cases", index, "name"), "a case's 'name' must be text")
    given = {k: v for k, v in entry.items() if k != "expect"}
    if "now" not in given and file_now is not None:
        given["now"] = file_now
    try:
        case = load_case(given, name=f"{path}:{line}")
    except CaseError as err:
        raise _case_error(path, line, err) from None
    if case.now is None:
        raise RuleTestError(path, line, "'now' is required (in the file, or in the case)")
    expect = _expect(path, (index,), entry.get("expect"), rules, lines)
    return RuleTest(path, line, name, rules, case, expect)


def _expect(path: Path, where: tuple[int], given: Any, rules: RuleSet, lines: _Lines) -> Expect:
    base = ("cases", *where, "expect")
    if given is None:
        return Expect()

    def fail(message: str, *keys: Any) -> RuleTestError:
        return RuleTestError(path, lines.key(*base, *keys), message)

    if not isinstance(given, Mapping):
        raise fail("'expect' must be a mapping")
    for key in given:
        if key not in _EXPECT_KEYS:
            raise fail(f"unknown expect key {key!r} (expect may have {', '.join(_EXPECT_KEYS)})", key)
    score = band = route = None
    if "score" in given:
        score = {}
        for name, value in _mapping(given["score"], fail, "score").items():
            if name not in rules.scores:
                raise fail(f"expect.score: unknown score {name!r} (the rules have {_names(rules.scores)})", "score", name)
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise fail(f"expect.score.{name} must be a number, got {value!r}", "score", name)
            score[name] = float(value)
    if "band" in given:
        band = {}
        for name, value in _mapping(given["band"], fail, "band").items():
            if name not in rules.scores:
                raise fail(f"expect.band: unknown score {name!r} (the rules have {_names(rules.scores)})", "band", name)
            bands = [b for b, _ in rules.scores[name].bands]
            if value is not None and value not in bands:
                raise fail(f"expect.band.{name}: {value!r} is not a band of {name} ({', '.join(bands) or 'none'})", "band", name)
            band[name] = value
    if "route" in given:
        route = _route(_mapping(given["route"], fail, "route"), rules, fail)
    triggers = None
    if "triggers" in given:
        listed = given["triggers"] if given["triggers"] is not None else []
        if not isinstance(listed, list) or not all(isinstance(t, str) for t in listed):
            raise fail("expect.triggers must be a list of trigger names", "triggers")
        known = {t.name for t in rules.triggers}
        for index, name in enumerate(listed):
            if name not in known:
                raise fail(f"expect.triggers: unknown trigger {name!r} (the rules have {_names(known)})", "triggers", index)
        triggers = tuple(dict.fromkeys(listed))
    notifications = None
    if "notifications" in given:
        notifications = _notifications(given["notifications"], fail)
    return Expect(score, band, route, triggers, notifications)


def _names(names: Iterable[str]) -> str:
    return ", ".join(sorted(names)) or "none"


def _mapping(value: Any, fail: Callable[..., RuleTestError], key: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise fail(f"expect.{key} must be a mapping", key)
    return value


def _route(given: Mapping[str, Any], rules: RuleSet, fail: Callable[..., RuleTestError]) -> dict[str, str | None]:
    known = {
        "rule": {r.name for routes in rules.routing.values() for r in routes},
        "desk": set(rules.desks),
        "agent": set(rules.agents),
        "outcome": {"assigned", "pooled", "unassigned", "unrouted"},
        "stage": set(rules.routing),
        "strategy": {"round_robin", "least_loaded", "weighted", "pool"},
    }
    route: dict[str, str | None] = {}
    for key, value in given.items():
        if key not in _ROUTE_KEYS:
            raise fail(f"unknown expect.route key {key!r} (route may have {', '.join(_ROUTE_KEYS)})", "route", key)
        if value is not None and (not isinstance(value, str) or value not in known[key]):
            raise fail(f"expect.route.{key}: {value!r} is not one of the rules' {key}s ({_names(known[key])})", "route", key)
        route[key] = value
    return route


def _notifications(given: Any, fail: Callable[..., RuleTestError]) -> tuple[Mapping[str, str], ...]:
    listed = given if given is not None else []
    if not isinstance(listed, list):
        raise fail("expect.notifications must be a list such as [{kind: assigned, recipient: a1}]", "notifications")
    out = []
    for index, item in enumerate(listed):
        if not isinstance(item, Mapping) or not item:
            raise fail("each expected notification is a mapping of kind, recipient and trigger", "notifications", index)
        for key, value in item.items():
            if key not in _NOTIFICATION_KEYS:
                raise fail(f"unknown notification key {key!r} (a notification has {', '.join(_NOTIFICATION_KEYS)})",
                           "notifications", index, key)
            if not isinstance(value, str):
                raise fail(f"expect.notifications[{index}].{key} must be text", "notifications", index, key)
        out.append(dict(item))
    return tuple(out)


# --- running ------------------------------------------------------------------------------------


@dataclass
class Exercised:
    """What one case exercised, for ``--coverage``."""

    score_rules: set[tuple[str, str]] = field(default_factory=set)  # (score, rule) whose `when` held
    bands: set[tuple[str, str]] = field(default_factory=set)  # (score, band) the client landed in
    routes: set[tuple[str, str]] = field(default_factory=set)  # (stage, rule) whose `when` held
    triggers: set[str] = field(default_factory=set)  # triggers that fired


@dataclass
class Outcome:
    """The result of one case: failures (expected vs actual), the explain trace, what it
    exercised; ``error`` when the case could not run."""

    test: RuleTest | None
    failures: list[str] = field(default_factory=list)
    trace: list[str] = field(default_factory=list)
    exercised: Exercised = field(default_factory=Exercised)
    error: RuleTestError | None = None
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.error is None and not self.failures

    @property
    def name(self) -> str:
        return self.test.name if self.test is not None else "(file)"

    def render(self) -> str:
        """The failure as the runner prints it: a head, each difference, the explain trace."""
        if self.error is not None:
            return f"ERROR {self.error}"
        assert self.test is not None
        lines = [f"FAIL {self.test.location}: {self.test.name}"]
        lines += [f"  {failure}" for failure in self.failures]
        lines += ["  explain:", *(f"    {line}" for line in self.trace)]
        return "\n".join(lines)


@dataclass(frozen=True)
class _Actual:
    client_id: str
    now: datetime
    explained: Mapping[str, Any]
    decisions: Sequence[Decision]
    fired: tuple[str, ...]
    notifications: tuple[Notification, ...]


def run_case(test: RuleTest) -> Outcome:
    """Run one case on a fresh engine (see the module docstring) and check its expectations."""
    started = time.perf_counter()
    outcome = Outcome(test)
    try:
        actual = _play(test)
    except RuleTestError as err:
        outcome.error = err
    except CaseError as err:
        outcome.error = _case_error(test.path, test.line, err)
    else:
        outcome.failures = _compare(test.expect, actual)
        outcome.trace = _trace(actual)
        outcome.exercised = _exercised(test.rules, actual)
    outcome.seconds = time.perf_counter() - started
    return outcome


def _play(test: RuleTest) -> _Actual:
    rules = test.rules
    context = case_context(rules, test.case)
    now: datetime = context["now"]
    history: list[dict[str, Any]] = context["events"]
    record: dict[str, Any] = dict(context["client"])
    record["trading"] = context["trading"]
    client_id: str = record["id"]
    fail = _case_failure(test)
    registered_at: datetime | None = record["registered_at"]
    if registered_at is None:
        registered_at = min([e["at"] for e in history] + [now])
        record["registered_at"] = registered_at
    if registered_at > now:
        raise fail(f"client.registered_at {jsonable(registered_at)} is after now ({jsonable(now)})")
    ftd: dict[str, Any] | None = None
    if record["ftd_at"] is not None:
        if not registered_at <= record["ftd_at"] <= now:
            raise fail(f"client.ftd_at {jsonable(record['ftd_at'])} is not between registered_at and now")
        given_stage = test.case.client.get("stage")
        ftd = {"ftd_at": record["ftd_at"], "ftd_amount": record["ftd_amount"], "stage": given_stage or "funded"}
        record["ftd_at"] = record["ftd_amount"] = None
        record["stage"] = infer_stage(record) if given_stage in (None, "funded") else given_stage

    engine = Engine(rules)
    first = registered_at
    if context["ib"] is not None:
        engine.handle({"id": "case:ib", "type": "ib_updated", "at": first, "ib": context["ib"]})
    values = {k: v for k, v in record.items() if k != "id"}
    registration = ClientRegistered.model_construct(
        type="client_registered", id="case:registration", client_id=client_id, at=registered_at, **values,
    )
    timeline: list[tuple[datetime, int, Mapping[str, Any], str]] = []
    if ftd is not None:
        update = {"id": "case:ftd", "type": "client_updated", "client_id": client_id, "at": ftd["ftd_at"], "fields": ftd}
        timeline.append((ftd["ftd_at"], 0, update, "client.ftd_at (the first deposit)"))
    for index, record in enumerate(history):
        timeline.append((record["at"], 1, record, f"events[{index}] ({record['type']})"))
    timeline.sort(key=lambda entry: (entry[0], entry[1]))
    steps: list[tuple[ClientRegistered | Mapping[str, Any], str]] = [(registration, "the client's registration")]
    steps += [(event, what) for _, _, event, what in timeline]
    for event, what in steps:
        result = engine.handle(event)
        if result.dead_lettered:
            raise fail(f"{what}: the engine cannot apply it: {result.error}")
    engine.scan(now)
    decisions = engine.store.decisions(client_id)
    return _Actual(
        client_id=client_id,
        now=now,
        explained=engine.explain(client_id, now=now),
        decisions=decisions,
        fired=tuple(dict.fromkeys(name for d in decisions for name in d.fired)),
        notifications=tuple(n for d in decisions for n in d.notifications),
    )


def _case_error(path: Path, line: int, err: CaseError) -> RuleTestError:
    """A case's error at the case's line (its message is prefixed with ``file:line: ``)."""
    return RuleTestError(path, line, str(err).removeprefix(f"{path}:{line}: "))


def _case_failure(test: RuleTest) -> Callable[[str], RuleTestError]:
    def fail(message: str) -> RuleTestError:
        return RuleTestError(test.path, test.line, message)
    return fail


# --- comparing ----------------------------------------------------------------------------------


def _compare(expect: Expect, actual: _Actual) -> list[str]:
    failures: list[str] = []
    explained = actual.explained
    for name, wanted in (expect.score or {}).items():
        got = explained["scores"].get(name)
        if got is None or not math.isclose(float(got), wanted, rel_tol=_TOLERANCE, abs_tol=_TOLERANCE):
            failures.append(f"score.{name}: expected {_number(wanted)}, got {_number(got)}")
    for name, wanted_band in (expect.band or {}).items():
        got_band = explained["bands"].get(name)
        if got_band != wanted_band:
            failures.append(f"band.{name}: expected {_text(wanted_band)}, got {_text(got_band)}")
    if expect.route is not None:
        routing = explained["routing"] or {}
        for key, wanted_value in expect.route.items():
            got_value = routing.get(key)
            if got_value != wanted_value:
                failures.append(f"route.{key}: expected {_text(wanted_value)}, got {_text(got_value)}")
    if expect.triggers is not None and set(expect.triggers) != set(actual.fired):
        missing = [t for t in expect.triggers if t not in actual.fired]
        extra = [t for t in actual.fired if t not in expect.triggers]
        detail = "; ".join(part for part in (
            f"did not fire: {', '.join(missing)}" if missing else "",
            f"fired unexpectedly: {', '.join(extra)}" if extra else "",
        ) if part)
        failures.append(f"triggers: expected {_list(expect.triggers)}, got {_list(actual.fired)} ({detail})")
    if expect.notifications is not None:
        failures += _compare_notifications(expect.notifications, actual)
    return failures


def _notification_view(note: Notification, client_id: str) -> dict[str, str]:
    view = {"kind": note.kind, "recipient": "client" if note.recipient == client_recipient(client_id) else note.recipient}
    trigger = note.payload.get("trigger") if note.kind == "trigger" else None
    if isinstance(trigger, str):
        view["trigger"] = trigger
    return view


def _compare_notifications(expected: Sequence[Mapping[str, str]], actual: _Actual) -> list[str]:
    """Exactly these notifications, in any order: a one-to-one matching of the expected ones
    (each naming some of kind, recipient, trigger) with the notifications sent."""
    sent = [_notification_view(n, actual.client_id) for n in actual.notifications]
    fits = [[j for j, got in enumerate(sent) if all(got.get(k) == v for k, v in want.items())] for want in expected]
    match: dict[int, int] = {}  # sent index -> expected index

    def place(i: int, seen: set[int]) -> bool:  # augmenting path (Kuhn's matching)
        for j in fits[i]:
            if j not in seen:
                seen.add(j)
                if j not in match or place(match[j], seen):
                    match[j] = i
                    return True
        return False

    missing = [expected[i] for i in range(len(expected)) if not place(i, set())]
    extra = [sent[j] for j in range(len(sent)) if j not in match]
    failures = []
    if missing or extra:
        failures.append(f"notifications: expected {len(expected)}, got {len(sent)}")
        failures += [f"  not sent: {_flow(m)}" for m in missing]
        failures += [f"  sent unexpectedly: {_flow(e)}" for e in extra]
    return failures


def _number(value: Any) -> str:
    if value is None:
        return "null"
    number = float(value)
    return str(int(number)) if number.is_integer() else repr(number)


def _text(value: Any) -> str:
    return "null" if value is None else str(value)


def _list(names: Iterable[str]) -> str:
    return "[" + ", ".join(names) + "]"


def _flow(mapping: Mapping[str, Any]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in mapping.items()) + "}"


# --- explaining ---------------------------------------------------------------------------------


def _trace(actual: _Actual) -> list[str]:
    """Why the case came out as it did: scores with their points, the routings with their
    traces, the triggers that fired, the notifications."""
    explained = actual.explained
    lines = [f"at {jsonable(actual.now)}:"]
    for name, value in explained["scores"].items():
        points = ", ".join(f"{rule} {_signed(p)}" for rule, p in explained["breakdown"].get(name, {}).items())
        lines.append(f"  score {name} = {_number(value)} (band {_text(explained['bands'].get(name))})"
                     + (f": {points}" if points else ": no rule held"))
    holding = explained["triggers"]
    lines.append(f"  condition triggers holding: {', '.join(holding) if holding else 'none'}")
    for decision in actual.decisions:
        routing = decision.routing
        if routing is None:
            continue
        head = f"routing {decision.stage} at {jsonable(decision.at)} ({_cause(decision)}): {routing.outcome}"
        if routing.rule is not None:
            head += f" by {routing.rule}"
        if routing.desk is not None:
            head += f", desk {routing.desk}"
        if routing.agent is not None:
            head += f", agent {routing.agent}"
        lines.append(head)
        for step in routing.trace:
            line = f"  {step.rule}: {step.outcome}"
            if step.agent is not None:
                line += f" {step.agent}"
            if step.excluded:
                line += " (" + ", ".join(f"{agent}: {reason}" for agent, reason in step.excluded.items()) + ")"
            lines.append(line)
    fired = [f"{name} at {jsonable(d.at)}" for d in actual.decisions for name in d.fired]
    lines.append(f"triggers fired: {', '.join(fired) if fired else 'none'}")
    notes = [_flow(_notification_view(n, actual.client_id)) for n in actual.notifications]
    lines.append(f"notifications: {', '.join(notes) if notes else 'none'}")
    return lines


def _cause(decision: Decision) -> str:
    if decision.cause == "event":
        return "registration" if decision.event_id == "case:registration" else f"event {decision.event_id}"
    return decision.cause.replace("_", " ")


def _signed(points: Any) -> str:
    text = _number(points)
    return text if text.startswith("-") else f"+{text}"


# --- coverage -----------------------------------------------------------------------------------


def _exercised(rules: RuleSet, actual: _Actual) -> Exercised:
    seen = Exercised()
    breakdowns = [actual.explained["breakdown"], *(d.breakdown for d in actual.decisions)]
    for breakdown in breakdowns:
        for score, points in breakdown.items():
            seen.score_rules.update((score, rule) for rule in points)
    for bands in [actual.explained["bands"], *(d.bands for d in actual.decisions)]:
        seen.bands.update((score, band) for score, band in bands.items() if band is not None)
    for decision in actual.decisions:
        if decision.routing is not None and decision.stage is not None:
            seen.routes.update((decision.stage, s.rule) for s in decision.routing.trace if s.outcome != "no_match")
    seen.triggers.update(actual.fired)
    return seen


@dataclass(frozen=True)
class Coverage:
    """Which score rules, bands, routing rules and triggers of the tested rule sets some case
    exercised; ``missed`` lists the others as text (``score lead: rule gone_cold``)."""

    total: int
    missed: tuple[str, ...]

    @property
    def exercised(self) -> int:
        return self.total - len(self.missed)

    @property
    def percent(self) -> float:
        return 100.0 if self.total == 0 else 100.0 * self.exercised / self.total


def coverage(outcomes: Iterable[Outcome]) -> Coverage:
    """The coverage of the rule sets the ``outcomes`` ran against (each counted once)."""
    by_rules: dict[int, tuple[RuleSet, Exercised]] = {}
    for outcome in outcomes:
        if outcome.test is None:
            continue
        rules = outcome.test.rules
        _, seen = by_rules.setdefault(id(rules), (rules, Exercised()))
        seen.score_rules |= outcome.exercised.score_rules
        seen.bands |= outcome.exercised.bands
        seen.routes |= outcome.exercised.routes
        seen.triggers |= outcome.exercised.triggers
    total = 0
    missed: list[str] = []
    for rules, seen in by_rules.values():
        items = list(_items(rules))
        total += len(items)
        missed += [text for key, text in items if not _covered(seen, key)]
    return Coverage(total, tuple(missed))


def _items(rules: RuleSet) -> Iterator[tuple[tuple[str, ...], str]]:
    for score in rules.scores.values():
        for rule in score.rules:
            yield ("score", score.name, rule.name), f"score {score.name}: rule {rule.name} ({rule.when.location})"
        for band, _ in score.bands:
            yield ("band", score.name, band), f"score {score.name}: band {band}"
    for stage, routes in rules.routing.items():
        for route in routes:
            yield ("route", stage, route.name), f"routing {stage}: rule {route.name} ({route.when.location})"
    for trigger in rules.triggers:
        yield ("trigger", trigger.name), f"trigger {trigger.name} ({trigger.when.location})"


def _covered(seen: Exercised, key: tuple[str, ...]) -> bool:
    kind, *rest = key
    if kind == "score":
        return (rest[0], rest[1]) in seen.score_rules
    if kind == "band":
        return (rest[0], rest[1]) in seen.bands
    if kind == "route":
        return (rest[0], rest[1]) in seen.routes
    return rest[0] in seen.triggers


# --- a whole run --------------------------------------------------------------------------------


@dataclass
class Report:
    """Every case's outcome, in file order (a file that cannot be read is one outcome)."""

    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def passed(self) -> int:
        return sum(1 for o in self.outcomes if o.passed)

    @property
    def failed(self) -> int:
        return len(self.outcomes) - self.passed

    @property
    def summary(self) -> str:
        return f"{self.passed} passed, {self.failed} failed"


def run_tests(paths: Iterable[str | Path], select: re.Pattern[str] | None = None) -> Report:
    """Discover, load and run rule tests. ``select`` keeps the cases whose name (or
    ``file::name``) it matches anywhere. A file that cannot be read is one failed outcome."""
    report = Report()
    rule_sets: dict[tuple[str, ...], RuleSet] = {}
    try:
        files = discover(paths)
    except RuleTestError as err:
        report.outcomes.append(Outcome(None, error=err))
        return report
    for path in files:
        try:
            tests = load_test_file(path, rule_sets)
        except RuleTestError as err:
            report.outcomes.append(Outcome(None, error=err))
            continue
        for test in tests:
            if select is None or select.search(test.name) or select.search(test.id):
                report.outcomes.append(run_case(test))
    return report


def junit_xml(report: Report) -> str:
    """The report as JUnit XML: one ``testsuite`` per file, one ``testcase`` per case; a
    failed case has a ``failure``, a file or case that could not run an ``error``."""
    suites = ElementTree.Element("testsuites", name="crmcore rule tests")
    by_file: dict[str, list[Outcome]] = {}
    for outcome in report.outcomes:
        path = str(outcome.test.path) if outcome.test is not None else (outcome.error.path if outcome.error else "?")
        by_file.setdefault(path, []).append(outcome)
    totals = {"tests": 0, "failures": 0, "errors": 0}
    for path, outcomes in by_file.items():
        failures = sum(1 for o in outcomes if o.error is None and o.failures)
        errors = sum(1 for o in outcomes if o.error is not None)
        suite = ElementTree.SubElement(
            suites, "testsuite", name=path, tests=str(len(outcomes)), failures=str(failures), errors=str(errors),
            time=f"{sum(o.seconds for o in outcomes):.3f}",
        )
        totals["tests"] += len(outcomes)
        totals["failures"] += failures
        totals["errors"] += errors
        for outcome in outcomes:
            case = ElementTree.SubElement(
                suite, "testcase", classname=Path(path).name, name=outcome.name, time=f"{outcome.seconds:.3f}",
            )
            if outcome.test is not None:
                case.set("file", str(outcome.test.path))
                case.set("line", str(outcome.test.line))
            if outcome.error is not None:
                ElementTree.SubElement(case, "error", message=outcome.error.message.splitlines()[0]).text = outcome.render()
            elif outcome.failures:
                ElementTree.SubElement(case, "failure", message=outcome.failures[0]).text = outcome.render()
    for key, value in totals.items():
        suites.set(key, str(value))
    ElementTree.indent(suites)
    return ElementTree.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"
