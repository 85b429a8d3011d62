"""The pytest plugin: `pytest` collects `*_test.yaml` rule tests, one item per case.

The plugin is enabled with ``-p crmcore.pytest_plugin`` here, so that these tests work in a
checkout whose install predates the ``pytest11`` entry point; once the entry point is
installed, pytest loads it by itself (and ``-p`` would register it twice)."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).parents[1]
SPEC_RULES = Path(__file__).parent / "data" / "spec_rules.yaml"

TWO_CASES = f"""\
rules: {SPEC_RULES}
now: 2026-03-01T12:00:00Z
cases:
  - name: German lead
    client: {{country: DE, language: de, registered_at: 2026-03-01T10:00:00Z}}
    expect: {{score: {{lead: 20}}, route: {{rule: dach, agent: a2}}}}
  - name: wrong band
    client: {{country: DE, language: de, registered_at: 2026-03-01T10:00:00Z}}
    expect: {{band: {{lead: hot}}}}
"""


def plugin_args() -> list[str]:
    installed = any(ep.value == "crmcore.pytest_plugin" for ep in entry_points(group="pytest11"))
    return [] if installed else ["-p", "crmcore.pytest_plugin"]


def run_pytest(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*plugin_args(), "-p", "no:cacheprovider", *args)


def test_each_case_is_a_test_item(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", rules_test=TWO_CASES)
    result = run_pytest(pytester, "--collect-only", "-q")
    result.stdout.fnmatch_lines(["rules_test.yaml::German lead", "rules_test.yaml::wrong band"])


def test_cases_pass_and_fail_with_the_runners_diff(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", rules_test=TWO_CASES)
    result = run_pytest(pytester)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*FAIL *rules_test.yaml:7: wrong band",
        "  band.lead: expected hot, got cold",
        "  explain:",
        "*dach: assigned a2",
    ])


def test_k_selects_cases_by_name(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", rules_test=TWO_CASES)
    run_pytest(pytester, "-k", "German").assert_outcomes(passed=1, deselected=1)


def test_other_yaml_files_are_not_collected(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", rules="version: 1\n", notes_test_data="cases: []\n")
    result = run_pytest(pytester)
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED


def test_a_broken_file_is_a_collection_error_with_file_and_line(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", broken_test=f"rules: {SPEC_RULES}\nnow: 2026-03-01T12:00:00Z\ncases:\n  - client: {{country: DE}}\n    expect: {{scores: {{}}}}\n")
    result = run_pytest(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*broken_test.yaml:5: unknown expect key 'scores'*"])


def test_the_example_broker_rule_tests_pass_under_pytest(pytester: pytest.Pytester) -> None:
    result = run_pytest(pytester, str(ROOT / "examples" / "tests"), "-q")
    assert result.ret == pytest.ExitCode.OK
    outcomes = result.parseoutcomes()
    assert outcomes["passed"] >= 50 and "failed" not in outcomes


def test_yaml_named_like_a_test_that_is_not_a_rule_test_is_left_alone(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", deploy_test="steps:\n  - run: make deploy\n")
    pytester.makepyfile(test_a="def test_ok():\n    assert True\n")
    run_pytest(pytester).assert_outcomes(passed=1)


def test_a_file_with_a_mistyped_key_is_an_error_not_passed_over(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", typo_test=TWO_CASES.replace("cases:", "case:"))
    result = run_pytest(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*typo_test.yaml*case*"])


def test_a_flow_style_rule_test_is_collected(pytester: pytest.Pytester) -> None:
    flow = (f"{{rules: '{SPEC_RULES}', now: '2026-03-01T12:00:00Z', cases: [{{name: one, "
            "client: {country: DE, language: de, registered_at: '2026-03-01T10:00:00Z'}, "
            "expect: {band: {lead: hot}}}]}\n")
    pytester.makefile(".yaml", flow_test=flow)
    run_pytest(pytester).assert_outcomes(failed=1)


def test_other_yaml_with_a_rules_key_or_several_documents_is_left_alone(pytester: pytest.Pytester) -> None:
    role = "kind: Role\nrules:\n  - apiGroups: ['']\n    resources: [pods]\n    verbs: [get]\n"
    pytester.makefile(".yaml", role_test=role, multi_test="kind: Role\nrules: []\n---\nkind: RoleBinding\nsubjects: []\n")
    pytester.makepyfile(test_a="def test_ok():\n    assert True\n")
    run_pytest(pytester).assert_outcomes(passed=1)
