"""A whole run of rule tests: discovery to outcomes, coverage of the rules, JUnit XML."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

from crmcore.rules import RuleSet
from crmcore.ruletest.files import RuleTestError, discover, load_test_file
from crmcore.ruletest.runner import Exercised, Outcome, run_case

__all__ = ["Coverage", "Report", "coverage", "junit_xml", "run_tests"]


# --- coverage -----------------------------------------------------------------------------------


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

    def render(self) -> str:
        """The share exercised, then each item no case exercised, one a line."""
        lines = [f"coverage: {self.exercised} of {self.total} rules, bands, routes and triggers exercised ({self.percent:.1f}%)"]
        if self.missed:
            lines += ["not exercised by any case:", *(f"  {item}" for item in self.missed)]
        return "\n".join(lines) + "\n"


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

