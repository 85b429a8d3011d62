"""Reading rule-test files: discovery, the YAML with its line numbers, each case and its
expectations checked against the rules it names. Every problem is a :class:`RuleTestError`
with the file and line."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from crmcore.case import Case, CaseError, load_case
from crmcore.rules import RuleError, RuleSet, load_rules
from crmcore.rules.diagnostics import CrmError

__all__ = [
    "TEST_FILE_SUFFIXES", "Expect", "RuleTest", "RuleTestError", "case_error", "discover",
    "field_line", "is_test_file", "load_test_file",
]

TEST_FILE_SUFFIXES = ("_test.yaml", "_test.yml")
"""A file whose name ends so is a rule-test file."""

_FILE_KEYS = ("rules", "now", "cases")
_CASE_KEYS = ("name", "client", "ib", "trading", "events", "now", "expect")
_EXPECT_KEYS = ("score", "band", "route", "triggers", "notifications")
_ROUTE_KEYS = ("rule", "desk", "agent", "outcome", "stage", "strategy")
_NOTIFICATION_KEYS = ("kind", "recipient", "trigger")


class RuleTestError(CrmError):
    """A rule-test file (or one of its cases) that cannot be read or run: ``file:line: message``."""

    def __init__(self, path: str | Path, line: int | None, message: str):
        self.path = str(path)
        self.line = line
        self.message = message
        super().__init__(f"{self.path}:{line}: {message}" if line is not None else f"{self.path}: {message}")


# --- reading ------------------------------------------------------------------------------------


_SKIPPED = frozenset({"node_modules", "venv", "__pycache__", "site-packages"})
"""Folders discovery does not walk (nor hidden ones: .git, .venv, ...)."""


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
            found += sorted(p for p in path.rglob("*") if p.is_file() and is_test_file(p)
                            and not _SKIPPED.intersection(p.relative_to(path).parts[:-1])
                            and not any(part.startswith(".") for part in p.relative_to(path).parts[:-1]))
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
    field_lines: Mapping[str, int] = field(default_factory=dict, repr=False)  # "client.country", "events[0]" -> line

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
        self._walked: set[int] = set()
        if node is not None:
            self._walk(node, ())

    def _walk(self, node: yaml.Node, path: tuple[Any, ...]) -> None:
        self.lines[path] = node.start_mark.line + 1
        if id(node) in self._walked:  # an alias (`*funded`): its own lines are known, and it may be recursive
            return
        self._walked.add(id(node))
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
    field_lines = _field_lines(entry, index, lines)
    try:
        case = load_case(given, name=f"{path}:{line}")
    except CaseError as err:
        raise case_error(path, line, err, field_lines) from None
    if case.now is None:
        raise RuleTestError(path, line, "'now' is required (in the file, or in the case)")
    expect = _expect(path, (index,), entry.get("expect"), rules, lines)
    return RuleTest(path, line, name, rules, case, expect, field_lines)


def _field_lines(entry: Mapping[str, Any], index: int, lines: _Lines) -> dict[str, int]:
    """The lines of a case's fields as its errors name them: ``client.country``, ``events[0]``."""
    found: dict[str, int] = {}
    for root in ("client", "ib", "trading"):
        values = entry.get(root)
        for name in values if isinstance(values, Mapping) else ():
            line = lines.key("cases", index, root, name)
            if line is not None:
                found[f"{root}.{name}"] = line
    now_line = lines.key("cases", index, "now") if "now" in entry else lines.key("now")
    if now_line is not None:
        found["now"] = now_line
    events = entry.get("events")
    for number in range(len(events) if isinstance(events, list) else 0):
        line = lines.at("cases", index, "events", number)
        if line is not None:
            found[f"events[{number}]"] = line
    return found


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
            if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
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


def case_error(path: Path, line: int, err: CaseError, field_lines: Mapping[str, int] | None = None) -> RuleTestError:
    """A case's error (its message is prefixed with ``file:line: `` of the case), at the line
    of the field it names first."""
    message = str(err).removeprefix(f"{path}:{line}: ")
    return RuleTestError(path, field_line(message, field_lines or {}, line), message)


_FIELD = re.compile(r"[a-z_]+(\.[A-Za-z0-9_]+|\[\d+\])?")


def field_line(message: str, field_lines: Mapping[str, int], default: int) -> int:
    """The line of the field a message starts with (``client.contry: unknown field``,
    ``events[1] ...``), else ``default``."""
    named = _FIELD.match(message)
    return field_lines.get(named.group(0), default) if named is not None else default
