"""The pytest plugin: ``pytest`` collects rule tests (``*_test.yaml``, SPEC §9) as test items,
one per case, run by the same runner as ``crmcore test``.

Installed with crmcore (entry point ``pytest11``: ``crmcore``), so a broker's CI needs nothing
else than ``pytest rules/tests/``. Without the entry point (a source checkout), enable it with
``pytest -p crmcore.pytest_plugin``. A test file that cannot be read is a collection error
naming the file and line; a failing case shows expected vs actual and its explain trace.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from crmcore.rules import RuleSet
from crmcore.ruletest import (
    Outcome,
    RuleTest,
    RuleTestError,
    is_test_file,
    load_test_file,
    run_case,
)

__all__ = ["RuleTestFailed", "RuleTestFile", "RuleTestItem", "pytest_collect_file"]

_RULE_SETS = pytest.StashKey[dict[tuple[str, ...], RuleSet]]()  # one load per rule set per session


_BOTH = re.compile(r"^rules\s*:.*^(cases|now)\s*:|^(cases|now)\s*:.*^rules\s*:", re.M | re.S)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> RuleTestFile | None:
    """Collect ``*_test.yaml`` (and ``*_test.yml``) files that are rule tests: a mapping
    whose ``rules`` names rule files (a path or a list of paths) beside ``cases`` or ``now``,
    in any YAML style — so that a mistyped ``case:`` is an error, never a silently empty run.
    Other YAML of that name (a CI pipeline's ``deploy_test.yaml``, a Kubernetes Role's
    ``rules:``, several documents in one file) is none of crmcore's business: every pytest
    run in an environment with crmcore installed loads this plugin. A file that is not valid
    YAML is collected when ``rules:`` and ``cases:`` or ``now:`` start lines of it."""
    if not is_test_file(file_path):
        return None
    try:
        text = file_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        looks_like_one = _BOTH.search(text) is not None
        return RuleTestFile.from_parent(parent, path=file_path) if looks_like_one else None
    if not isinstance(data, dict) or not _names_rule_files(data.get("rules")) or not {"cases", "now"} & set(data):
        return None
    return RuleTestFile.from_parent(parent, path=file_path)


def _names_rule_files(value: object) -> bool:
    return isinstance(value, str) or (isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value))


class RuleTestFailed(Exception):
    """A case whose expectations do not hold (or that could not run)."""

    def __init__(self, outcome: Outcome):
        super().__init__(outcome.render())
        self.outcome = outcome


class RuleTestFile(pytest.File):
    """A rule-test file: one item per case."""

    def collect(self) -> Iterator[RuleTestItem]:
        rule_sets = self.config.stash.setdefault(_RULE_SETS, {})
        try:
            tests = load_test_file(self.path, rule_sets)
        except RuleTestError as err:
            raise self.CollectError(str(err)) from None
        for test in tests:
            yield RuleTestItem.from_parent(self, name=test.name, test=test)


class RuleTestItem(pytest.Item):
    """One case of a rule-test file."""

    def __init__(self, *, test: RuleTest, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.test = test

    def runtest(self) -> None:
        outcome = run_case(self.test)
        if not outcome.passed:
            raise RuleTestFailed(outcome)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, RuleTestFailed):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo, style=style))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.test.line - 1, f"rule test {self.test.location}: {self.test.name}"
