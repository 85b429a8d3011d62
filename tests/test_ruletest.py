"""`crmcore test`: rule tests (SPEC §9) — discovery, running a case, expected vs actual, exit
codes, --run, --junit, --coverage, broken files with file:line."""

from __future__ import annotations

import io
import re
import textwrap
from pathlib import Path
from xml.etree import ElementTree

import pytest

from crmcore.cli import main
from crmcore.ruletest import RuleTestError, load_test_file, run_case

ROOT = Path(__file__).parents[1]
SPEC_RULES = Path(__file__).parent / "data" / "spec_rules.yaml"

SPEC_EXAMPLE = """\
rules: {rules}
now: 2026-03-01T12:00:00Z
cases:
  - name: hot German lead goes to the senior desk
    client: {{country: DE, language: de, registered_at: 2026-03-01T10:00:00Z,
             kyc_submitted_at: 2026-03-01T11:00:00Z, email_clicks: 2}}
    ib: {{id: IB1, quality: 90}}
    events: []
    expect:
      score: {{lead: 60}}
      band: {{lead: warm}}
      route: {{rule: dach, desk: sales-general, agent: a2}}
      triggers: []
"""


def run(*argv: str | Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["test", *(str(a) for a in argv)], out, err)
    return code, out.getvalue(), err.getvalue()


def write_test(folder: Path, cases: str, *, name: str = "rules_test.yaml", rules: Path = SPEC_RULES,
               now: str = "2026-03-01T12:00:00Z") -> Path:
    """A test file in ``folder`` with ``cases`` (YAML, indented as under ``cases:``)."""
    path = folder / name
    path.write_text(f"rules: {rules}\nnow: {now}\ncases:\n{textwrap.dedent(cases)}", encoding="utf-8")
    return path


GERMAN = "client: {country: DE, language: de, registered_at: 2026-03-01T10:00:00Z}"


def case(expect: str, *, client: str = GERMAN, name: str = "a case", extra: str = "") -> str:
    lines = [f"- name: {name}", f"  {client}"]
    lines += [f"  {line}" for line in textwrap.dedent(extra).splitlines() if line.strip()]
    lines += ["  expect:", *(f"    {line}" for line in textwrap.dedent(expect).splitlines() if line.strip())]
    return "\n".join(lines) + "\n"


# --- the SPEC's example and the example broker -------------------------------------------------


def test_the_spec_example_passes(tmp_path: Path) -> None:
    (tmp_path / "spec_test.yaml").write_text(SPEC_EXAMPLE.format(rules=SPEC_RULES))
    assert run(tmp_path) == (0, "1 passed, 0 failed\n", "")


def test_the_example_broker_rule_tests_pass() -> None:
    code, out, _ = run(ROOT / "examples")
    assert code == 0, out
    passed = re.fullmatch(r"(\d+) passed, 0 failed\n", out)
    assert passed is not None and int(passed.group(1)) >= 50


def test_every_example_rule_band_route_and_trigger_is_exercised() -> None:
    code, out, _ = run(ROOT / "examples", "--coverage", "--min-coverage", "100")
    assert code == 0, out
    assert "(100.0%)" in out.splitlines()[0]


def test_the_test_file_shown_in_the_docs_passes(tmp_path: Path) -> None:
    doc = (ROOT / "docs" / "testing-rules.md").read_text()
    shown = re.search(r"## A test file\n\n(?:<!--.*?-->\n)?```yaml\n(.*?)```", doc, re.S)
    assert shown is not None
    path = tmp_path / "doc_test.yaml"
    path.write_text(shown.group(1).replace("rules: ../rules", f"rules: {ROOT / 'examples' / 'rules'}"))
    assert run(path) == (0, "2 passed, 0 failed\n", "")


# --- each expectation, passing and failing -----------------------------------------------------


def test_scores_compare_numerically(tmp_path: Path) -> None:
    write_test(tmp_path, case("score: {lead: 20.0}") + case("score: {lead: 20.0000000000001}", name="close"))
    assert run(tmp_path)[0:2] == (0, "2 passed, 0 failed\n")


def test_a_wrong_score_fails_with_expected_and_actual(tmp_path: Path) -> None:
    path = write_test(tmp_path, case("score: {lead: 60}", name="wrong score"))
    code, out, _ = run(path)
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == f"FAIL {path}:4: wrong score"
    assert lines[1] == "  score.lead: expected 60, got 20"
    assert lines[-1] == "0 passed, 1 failed"


def test_a_wrong_band_fails(tmp_path: Path) -> None:
    write_test(tmp_path, case("band: {lead: warm}"))
    code, out, _ = run(tmp_path)
    assert code == 1
    assert "  band.lead: expected warm, got cold" in out.splitlines()


def test_a_wrong_route_names_each_part_that_differs(tmp_path: Path) -> None:
    write_test(tmp_path, case("route: {rule: dach, desk: sales-general, agent: a3}"))
    code, out, _ = run(tmp_path)
    assert code == 1
    assert "  route.agent: expected a3, got a2" in out.splitlines()
    assert "route.rule" not in out and "route.desk" not in out


def test_triggers_must_be_exactly_those_that_fire(tmp_path: Path) -> None:
    nudged = "client: {country: DE, language: de, registered_at: 2026-02-27T10:00:00Z}"
    write_test(tmp_path, case("triggers: [kyc_nudge]", client=nudged, name="fires")
               + case("triggers: []", client=nudged, name="missing")
               + case("triggers: [kyc_nudge]", name="unexpected"))
    code, out, _ = run(tmp_path)
    assert code == 1
    assert "  triggers: expected [], got [kyc_nudge] (fired unexpectedly: kyc_nudge)" in out
    assert "  triggers: expected [kyc_nudge], got [] (did not fire: kyc_nudge)" in out
    assert out.splitlines()[-1] == "1 passed, 2 failed"


def test_notifications_must_be_exactly_those_sent(tmp_path: Path) -> None:
    right = "notifications: [{kind: assigned_to_team, recipient: m2}, {kind: assigned, recipient: a2}]"
    write_test(tmp_path, case(right, name="right")
               + case("notifications: [{kind: assigned}]", name="one missing"))
    code, out, _ = run(tmp_path)
    assert code == 1
    assert "  notifications: expected 1, got 2" in out
    assert "    sent unexpectedly: {kind: assigned_to_team, recipient: m2}" in out
    assert out.splitlines()[-1] == "1 passed, 1 failed"


def test_a_failure_shows_the_explain_trace_of_the_case(tmp_path: Path) -> None:
    write_test(tmp_path, case("score: {lead: 60}"))
    _, out, _ = run(tmp_path)
    assert "  explain:" in out
    assert "    timeline: 2026-03-01T10:00:00Z registration; 2026-03-01T12:00:00Z scan" in out
    assert "      score lead = 20 (band cold): tier1_country +20" in out
    assert "    routing registration at 2026-03-01T10:00:00Z (registration): assigned by dach, desk sales-general, agent a2" in out
    assert "      designated_manager: no_match" in out
    assert "      dach: assigned a2" in out


# --- how a case runs ---------------------------------------------------------------------------


def test_each_case_starts_from_a_clean_state(tmp_path: Path) -> None:
    # round robin from the start of the rotation in every case: a2 both times
    write_test(tmp_path, case("route: {agent: a2}", name="first") + case("route: {agent: a2}", name="second"))
    assert run(tmp_path)[0:2] == (0, "2 passed, 0 failed\n")


def test_route_is_the_rules_routing_not_an_sla_reassignment_at_the_scan(tmp_path: Path) -> None:
    # registered 2h01m before now: the senior desk's 2h first-contact SLA is past due at the scan
    hot = ("client: {country: DE, language: de, registered_at: 2026-03-01T09:59:00Z, "
           "kyc_submitted_at: 2026-03-01T11:00:00Z, email_clicks: 2}")
    expected = """\
        band: {lead: hot}
        route: {rule: hot, desk: sales-senior, agent: a1}
        notifications:
          - {kind: assigned, recipient: a1}
          - {kind: assigned_to_team, recipient: m1}
          - {kind: sla_breach, recipient: m1}
          - {kind: assigned, recipient: a2}
          - {kind: assigned_to_team, recipient: m2}
        """
    write_test(tmp_path, case(expected, client=hot, extra="ib: {id: IB1, quality: 150}"))
    code, out, _ = run(tmp_path)
    assert (code, out) == (0, "1 passed, 0 failed\n")


def test_an_on_trigger_fires_on_an_event_of_the_history(tmp_path: Path) -> None:
    funded = ("client: {country: GB, registered_at: 2026-01-01T10:00:00Z, ftd_at: 2026-01-02T10:00:00Z, "
              "ftd_amount: 500, last_trade_at: 2026-02-28T10:00:00Z}")
    history = "events: [{type: withdrawal, amount: 300, status: failed, ago: 2h}]"
    expected = """\
        triggers: [failed_withdrawal]
        notifications:
          - {kind: assigned, recipient: a2}
          - {kind: assigned_to_team, recipient: m2}
          - {kind: assigned, recipient: r1}
          - {kind: assigned_to_team, recipient: m3}
          - {kind: trigger, recipient: r1, trigger: failed_withdrawal}
          - {kind: trigger, recipient: m3, trigger: failed_withdrawal}
        """
    write_test(tmp_path, case(expected, client=funded, extra=history))
    code, out, _ = run(tmp_path)
    assert (code, out) == (0, "1 passed, 0 failed\n")


def test_a_client_given_as_funded_is_handed_over_at_ftd_at(tmp_path: Path) -> None:
    funded = "client: {country: GB, registered_at: 2026-01-01T10:00:00Z, ftd_at: 2026-01-02T10:00:00Z}"
    write_test(tmp_path, case("route: {stage: ftd, rule: to_retention, desk: retention, agent: r1}", client=funded))
    assert run(tmp_path)[0] == 0


def test_a_client_without_registered_at_registers_before_all_the_case_knows(tmp_path: Path) -> None:
    funded = "client: {country: GB, ftd_at: 2026-01-02T10:00:00Z, last_trade_at: 2026-01-20T10:00:00Z, balance: 500}"
    path = write_test(tmp_path, case("route: {rule: to_retention, agent: r1}\ntriggers: [dormant_30d]", client=funded))
    code, out, _ = run(path, "-v")
    assert code == 0, out
    outcome = run_case(load_test_file(path)[0])
    assert "timeline: 2026-01-02T10:00:00Z registration; 2026-01-02T10:00:00Z first deposit (ftd_at); " in outcome.trace[0]


def test_a_first_deposit_in_the_history_hands_the_client_over(tmp_path: Path) -> None:
    write_test(tmp_path, case("route: {rule: to_retention, agent: r1}", extra="events: [{type: deposit, amount: 100, ago: 1h}]"))
    assert run(tmp_path)[0] == 0


def test_condition_triggers_fire_at_the_scan(tmp_path: Path) -> None:
    dormant = ("client: {country: GB, registered_at: 2026-01-01T10:00:00Z, ftd_at: 2026-01-02T10:00:00Z, "
               "last_trade_at: 2026-01-20T10:00:00Z, balance: 500}")
    quiet = ("client: {country: GB, registered_at: 2026-01-01T10:00:00Z, ftd_at: 2026-01-02T10:00:00Z, "
             "last_trade_at: 2026-02-20T10:00:00Z, balance: 500}")
    write_test(tmp_path, case("triggers: [dormant_30d]", client=dormant, name="dormant")
               + case("triggers: []", client=quiet, name="traded this month"))
    assert run(tmp_path)[0:2] == (0, "2 passed, 0 failed\n")


def test_history_given_with_ago_feeds_the_activity_windows(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(textwrap.dedent("""\
        version: 1
        scores:
          activity:
            rules:
              - {name: traded, when: 'trades.count(30d) >= 1', points: 10}
              - {name: traded_before, when: 'trades.count(30d, 30d) >= 1', points: 1}
            bands: {active: 10, idle: 0}
        """))
    write_test(tmp_path, case("score: {activity: 10}\nband: {activity: active}", name="10 days ago",
                              client="client: {country: DE}", extra="events: [{type: trade, volume: 1, pnl: 5, ago: 10d}]")
               + case("score: {activity: 1}\nband: {activity: idle}", name="40 days ago",
                      client="client: {country: DE}", extra="events: [{type: trade, volume: 1, pnl: 5, ago: 40d}]")
               + case("score: {activity: 0}", name="no history", client="client: {country: DE}"),
               rules=rules)
    code, out, _ = run(tmp_path)
    assert (code, out) == (0, "3 passed, 0 failed\n")


def test_a_compact_trade_in_the_history_moves_last_trade_at(tmp_path: Path) -> None:
    funded = "client: {country: GB, stage: funded, balance: 500}"
    write_test(tmp_path, case("triggers: [dormant_30d]", client=funded, name="40 days", extra="events: [{type: trade, ago: 40d}]")
               + case("triggers: []", client=funded, name="10 days", extra="events: [{type: trade, ago: 10d}]"))
    assert run(tmp_path)[0:2] == (0, "2 passed, 0 failed\n")


def test_an_event_the_engine_refuses_is_an_error_of_the_case(tmp_path: Path) -> None:
    path = write_test(tmp_path, case("triggers: []", extra="events: [{type: client_updated, fields: {desk_id: retention}, ago: 1h}]"))
    code, out, _ = run(path)
    assert code == 1
    assert out.splitlines()[0].startswith(f"ERROR {path}:6: events[0] (client_updated): the engine cannot apply it: ")
    assert out.splitlines()[-1] == "0 passed, 1 failed"


def test_run_case_reports_what_it_exercised(tmp_path: Path) -> None:
    path = tmp_path / "spec_test.yaml"
    path.write_text(SPEC_EXAMPLE.format(rules=SPEC_RULES))
    outcome = run_case(load_test_file(path)[0])
    assert outcome.passed
    assert ("lead", "fast_kyc") in outcome.exercised.score_rules
    assert ("lead", "warm") in outcome.exercised.bands
    assert ("registration", "dach") in outcome.exercised.routes
    assert outcome.exercised.triggers == set()


def test_tests_may_live_inside_the_rules_folder(tmp_path: Path) -> None:
    # the layout docs/testing-rules.md recommends: rules/tests/*_test.yaml with `rules: ..`
    rules = tmp_path / "rules"
    (rules / "tests").mkdir(parents=True)
    (rules / "broker.yaml").write_text(SPEC_RULES.read_text())
    write_test(rules / "tests", case("route: {rule: dach, agent: a2}"), rules=Path(".."))
    assert run(rules)[0:2] == (0, "1 passed, 0 failed\n")


# --- selecting, reporting, exit codes ----------------------------------------------------------


def test_no_test_found_is_a_failure(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text("version: 1\n")  # not a *_test.yaml file
    code, out, _ = run(tmp_path)
    assert code == 1
    assert out.splitlines() == ["no rule test ran (no *_test.yaml file found)", "0 passed, 0 failed"]


def test_run_selects_cases_by_name(tmp_path: Path) -> None:
    write_test(tmp_path, case("score: {lead: 20}", name="German lead") + case("score: {lead: 99}", name="broken one"))
    assert run(tmp_path, "--run", "German")[0:2] == (0, "1 passed, 0 failed\n")
    assert run(tmp_path, "--run", "^broken")[0] == 1


def test_run_matching_nothing_is_a_failure(tmp_path: Path) -> None:
    write_test(tmp_path, case("score: {lead: 20}"))
    code, out, _ = run(tmp_path, "--run", "nothing like it")
    assert code == 1
    assert out.splitlines()[-1] == "0 passed, 0 failed"


def test_a_bad_run_pattern_is_an_error(tmp_path: Path) -> None:
    code, _, err = run(tmp_path, "--run", "(")
    assert code == 1
    assert err.startswith("crmcore test: error: --run '(' is not a regular expression")


def test_verbose_lists_the_cases_that_pass(tmp_path: Path) -> None:
    path = write_test(tmp_path, case("score: {lead: 20}", name="German lead"))
    assert run(path, "-v")[1] == f"PASS {path}:4: German lead\n1 passed, 0 failed\n"


def test_junit_writes_one_testcase_per_case(tmp_path: Path) -> None:
    path = write_test(tmp_path, case("score: {lead: 20}", name="passes") + case("band: {lead: hot}", name="fails"))
    report = tmp_path / "junit.xml"
    assert run(tmp_path, "--junit", report)[0] == 1
    root = ElementTree.parse(report).getroot()
    assert (root.tag, root.get("tests"), root.get("failures"), root.get("errors")) == ("testsuites", "2", "1", "0")
    suite = root.find("testsuite")
    assert suite is not None and suite.get("name") == str(path)
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert set(cases) == {"passes", "fails"}
    assert cases["passes"].find("failure") is None
    failure = cases["fails"].find("failure")
    assert failure is not None and failure.get("message") == "band.lead: expected hot, got cold"
    assert "explain:" in (failure.text or "")


def test_junit_reports_a_broken_file_as_an_error(tmp_path: Path) -> None:
    (tmp_path / "broken_test.yaml").write_text("rules: [\n")
    report = tmp_path / "junit.xml"
    assert run(tmp_path, "--junit", report)[0] == 1
    root = ElementTree.parse(report).getroot()
    assert (root.get("tests"), root.get("errors")) == ("1", "1")


def test_coverage_lists_what_no_case_exercised(tmp_path: Path) -> None:
    write_test(tmp_path, case("band: {lead: cold}"))
    code, out, _ = run(tmp_path, "--coverage")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "coverage: 3 of 16 rules, bands, routes and triggers exercised (18.8%)"
    assert lines[1] == "not exercised by any case:"
    assert f"  score lead: rule fast_kyc ({SPEC_RULES}:37:33)" in lines
    assert "  score lead: band hot" in lines
    assert "  routing registration: rule hot" in " ".join(lines)
    assert any(line.startswith("  trigger kyc_nudge (") for line in lines)
    assert "  score lead: rule tier1_country" not in " ".join(lines)  # it held
    assert not any("rule dach" in line for line in lines)  # it routed the client
    assert lines[-1] == "1 passed, 0 failed"


def test_min_coverage_fails_below_the_percentage(tmp_path: Path) -> None:
    write_test(tmp_path, case("band: {lead: cold}"))
    code, out, _ = run(tmp_path, "--min-coverage", "20")
    assert code == 1
    assert "coverage 18.8% is below --min-coverage 20%" in out
    assert run(tmp_path, "--min-coverage", "18.75")[0] == 0


# --- broken test files: an error with file and line --------------------------------------------


def broken(tmp_path: Path, text: str) -> tuple[Path, str]:
    path = tmp_path / "broken_test.yaml"
    path.write_text(textwrap.dedent(text))
    code, out, _ = run(path)
    assert code == 1
    assert out.splitlines()[-1] == "0 passed, 1 failed"
    return path, out.splitlines()[0]


def test_bad_yaml_is_an_error_with_its_line(tmp_path: Path) -> None:
    path, error = broken(tmp_path, f"rules: {SPEC_RULES}\ncases:\n  - name: x\n    client: {{country: DE\n")
    assert error.startswith(f"ERROR {path}:5: not valid YAML: ")


def test_an_unknown_expect_key_is_an_error_at_its_line(tmp_path: Path) -> None:
    path, error = broken(tmp_path, f"""\
        rules: {SPEC_RULES}
        now: 2026-03-01T12:00:00Z
        cases:
          - name: x
            client: {{country: DE}}
            expect:
              score: {{lead: 20}}
              route_to: {{agent: a2}}
        """)
    assert error == (f"ERROR {path}:8: unknown expect key 'route_to' "
                     "(expect may have score, band, route, triggers, notifications)")


def test_an_unknown_file_key_is_an_error(tmp_path: Path) -> None:
    path, error = broken(tmp_path, f"rules: {SPEC_RULES}\nnow: 2026-03-01T12:00:00Z\ncase: []\n")
    assert error == f"ERROR {path}:3: unknown key 'case' (a test file has rules, now, cases)"


def test_an_unknown_case_key_is_an_error(tmp_path: Path) -> None:
    path, error = broken(tmp_path, f"rules: {SPEC_RULES}\nnow: 2026-03-01T12:00:00Z\ncases:\n  - client: {{country: DE}}\n    expected: {{}}\n")
    assert error.startswith(f"ERROR {path}:5: unknown case key 'expected'")


def test_a_missing_rules_path_is_an_error(tmp_path: Path) -> None:
    path, error = broken(tmp_path, "now: 2026-03-01T12:00:00Z\nrules: ../nowhere\ncases: [{client: {country: DE}}]\n")
    assert error == f"ERROR {path}:2: rules: no such file or folder: {tmp_path.parent / 'nowhere'}"


def test_rules_that_do_not_load_are_an_error_with_their_diagnostics(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("scores:\n  lead:\n    rules:\n      - {name: a, when: 'client.contry == \"DE\"', points: 1}\n")
    path = tmp_path / "broken_test.yaml"
    path.write_text("rules: bad.yaml\nnow: 2026-03-01T12:00:00Z\ncases: [{client: {country: DE}}]\n")
    code, out, _ = run(path)
    assert code == 1
    assert out.splitlines()[0] == f"ERROR {path}:1: the rules do not load:"
    assert f"{bad}:4:26: error: unknown field 'client.contry'" in out


def test_an_unknown_trigger_in_expect_is_an_error(tmp_path: Path) -> None:
    path, error = broken(tmp_path, f"""\
        rules: {SPEC_RULES}
        now: 2026-03-01T12:00:00Z
        cases:
          - client: {{country: DE}}
            expect:
              triggers:
                - kyc_nudge
                - dormant_31d
        """)
    assert error.startswith(f"ERROR {path}:8: expect.triggers: unknown trigger 'dormant_31d'")


def test_an_unknown_band_in_expect_is_an_error(tmp_path: Path) -> None:
    path, error = broken(tmp_path, f"rules: {SPEC_RULES}\nnow: 2026-03-01T12:00:00Z\ncases:\n  - client: {{country: DE}}\n    expect: {{band: {{lead: tepid}}}}\n")
    assert error == f"ERROR {path}:5: expect.band.lead: 'tepid' is not a band of lead (hot, warm, cold)"


def test_an_unknown_client_field_is_an_error_at_its_line(tmp_path: Path) -> None:
    path = write_test(tmp_path, case("score: {lead: 20}", client="client:\n    country: DE\n    contry: DE"))
    code, out, _ = run(path)
    assert code == 1
    assert out.splitlines()[0].startswith(f"ERROR {path}:7: client.contry: unknown field")


def test_a_bad_history_event_is_an_error_at_its_line(tmp_path: Path) -> None:
    history = "events:\n  - {type: login, ago: 1d}\n  - {type: deposit, ago: 2d}"
    path = write_test(tmp_path, case("score: {lead: 20}", extra=history))
    code, out, _ = run(path)
    assert code == 1
    assert out.splitlines()[0] == f"ERROR {path}:8: events[1]: deposit.amount: Field required"


def test_a_case_without_now_is_an_error(tmp_path: Path) -> None:
    path, error = broken(tmp_path, f"rules: {SPEC_RULES}\ncases:\n  - name: x\n    client: {{country: DE}}\n")
    assert error == f"ERROR {path}:3: 'now' is required (in the file, or in the case)"


def test_a_bad_now_is_an_error_at_its_line(tmp_path: Path) -> None:
    path, error = broken(tmp_path, f"rules: {SPEC_RULES}\nnow: soon\ncases:\n  - client: {{country: DE}}\n")
    assert error == f"ERROR {path}:2: now is not an ISO 8601 timestamp: 'soon'"


def test_a_missing_path_is_an_error(tmp_path: Path) -> None:
    code, out, _ = run(tmp_path / "nope")
    assert code == 1
    assert out.splitlines() == [f"ERROR {tmp_path / 'nope'}: no such file or folder", "0 passed, 1 failed"]


def test_load_test_file_raises_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "x_test.yaml"
    path.write_text(f"rules: {SPEC_RULES}\nnow: 2026-03-01T12:00:00Z\ncases:\n  - client: {{country: DE}}\n    expect: {{score: {{leads: 1}}}}\n")
    with pytest.raises(RuleTestError) as caught:
        load_test_file(path)
    assert (caught.value.path, caught.value.line) == (str(path), 5)
    assert str(caught.value).startswith(f"{path}:5: expect.score: unknown score 'leads'")


def test_history_before_the_registration_is_an_error_of_the_case(tmp_path: Path) -> None:
    path = write_test(tmp_path, case("triggers: []", extra="events: [{type: deposit, amount: 500, ago: 40d}]"))
    code, out, _ = run(path)
    assert code == 1
    assert out.splitlines()[0].startswith(f"ERROR {path}:")
    assert "events[0] (deposit) at 2026-01-20T12:00:00Z is before client.registered_at 2026-03-01T10:00:00Z" in out
    assert out.splitlines()[-1] == "0 passed, 1 failed"
