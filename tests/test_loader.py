"""Rule files: the whole YAML format loads, and every broken file says where and what."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

import crmcore
from crmcore.rules.diagnostics import Code, RuleError

BASE = """\
version: 1
lists:
  TIER1: ["DE", "CH", "GB"]
desks:
  - {id: sales, kind: sales, sla: {first_contact: 2h}, on_sla_breach: reassign}
  - {id: retention, kind: retention}
agents:
  - {id: m1, name: Max, desk: sales, role: manager}
  - {id: a1, name: Anna, desk: sales, manager: m1, languages: [de, en], capacity: 40}
"""


def write(tmp_path: Path, text: str, name: str = "rules.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def errors(tmp_path: Path, text: str) -> list[tuple[str, int, int, str]]:
    with pytest.raises(RuleError) as info:
        crmcore.load_rules(write(tmp_path, text))
    return [(d.code, d.line, d.column, d.message) for d in info.value.errors]


def first(tmp_path: Path, text: str) -> tuple[str, int, int]:
    code, line, column, _ = errors(tmp_path, text)[0]
    return code, line, column


# Each case: a broken file, and the code, line and column of its (first) error.
BROKEN = {
    "unknown field in a plain scalar": (
        BASE + "scores:\n  lead:\n    rules:\n      - name: a\n        when: client.contry in TIER1\n        points: 1\n",
        (Code.UNKNOWN_NAME, 14, 15),
    ),
    "type error inside a single-quoted flow scalar": (
        BASE + "scores:\n  lead:\n    rules:\n      - {name: a, when: 'client.balance > ''x''', points: 1}\n",
        (Code.TYPE_MISMATCH, 13, 41),
    ),
    "type error inside a double-quoted scalar with escapes": (
        BASE + 'scores:\n  lead:\n    rules:\n      - {name: a, when: "client.country == \\"DE\\" and lower(1) == \\"x\\"", points: 1}\n',
        (Code.TYPE_MISMATCH, 13, 55),
    ),
    "error on the second line of a literal block": (
        BASE + "scores:\n  lead:\n    rules:\n      - name: a\n        when: |\n          client.balance > 100 and\n            nosuch.x\n        points: 1\n",
        (Code.UNKNOWN_NAME, 16, 13),
    ),
    "error on the second line of a folded block": (
        BASE + "scores:\n  lead:\n    rules:\n      - name: a\n        when: >-\n          client.balance > 100\n          and frob(1)\n        points: 1\n",
        (Code.UNKNOWN_NAME, 16, 15),
    ),
    "error in a multi-line plain scalar": (
        BASE + "scores:\n  lead:\n    rules:\n      - name: a\n        when: client.balance > 100 and\n          client.nope\n        points: 1\n",
        (Code.UNKNOWN_NAME, 15, 11),
    ),
    "syntax error": (
        BASE + "scores:\n  lead:\n    rules:\n      - {name: a, when: 'client.country = \"DE\"', points: 1}\n",
        (Code.SYNTAX, 13, 41),
    ),
    "wrong arity": (
        BASE + "scores:\n  lead:\n    rules:\n      - {name: a, when: 'days_since() > 1', points: 1}\n",
        (Code.ARITY, 13, 26),
    ),
    "condition that is not a bool": (
        BASE + "scores:\n  lead:\n    rules:\n      - {name: a, when: 'client.balance + 1', points: 1}\n",
        (Code.NOT_BOOL, 13, 26),
    ),
    "points that are not a number": (
        BASE + "scores:\n  lead:\n    rules:\n      - {name: a, when: true, points: 'client.country'}\n",
        (Code.NOT_NUMBER, 13, 40),
    ),
    "bad regex": (
        BASE + "scores:\n  lead:\n    rules:\n      - {name: a, when: 'client.email matches \"[a-\"', points: 1}\n",
        (Code.BAD_REGEX, 13, 47),
    ),
    "bad duration in a cooldown": (
        BASE + "triggers:\n  - {name: t, when: true, queue: q, cooldown: 14 days}\n",
        (Code.STRUCTURE, 11, 47),
    ),
    "bad duration in an expression": (
        BASE + "triggers:\n  - {name: t, when: 'deposits.count(30x) > 1', queue: q}\n",
        (Code.SYNTAX, 11, 37),
    ),
    "unknown key": (
        BASE + "triggers:\n  - {name: t, when: true, queue: q, colldown: 14d}\n",
        (Code.STRUCTURE, 11, 37),
    ),
    "missing key": (
        BASE + "scores:\n  lead:\n    rules:\n      - {name: a, when: true}\n",
        (Code.STRUCTURE, 13, 9),
    ),
    "unknown desk in routing": (
        BASE + "routing:\n  registration:\n    - {name: r, when: true, assign: {desk: salse, strategy: round_robin}}\n",
        (Code.REFERENCE, 12, 44),
    ),
    "bad working hours": (
        BASE + "  - {id: a2, desk: sales, hours: 'Mon-Fri 09:00-18:00 Europe/Berln'}\n",
        (Code.STRUCTURE, 10, 34),
    ),
    "unknown strategy": (
        BASE + "routing:\n  registration:\n    - {name: r, when: true, assign: {desk: sales, strategy: random}}\n",
        (Code.STRUCTURE, 12, 61),
    ),
    "agent of an unknown desk": (
        BASE + "  - {id: a2, desk: nowhere}\n",
        (Code.REFERENCE, 10, 20),
    ),
    "duplicate agent id": (
        BASE + "  - {id: a1, desk: sales}\n",
        (Code.DUPLICATE, 10, 5),
    ),
    "duplicate YAML key": (
        BASE + "scores:\n  lead:\n    rules: []\n    rules: []\n",
        (Code.DUPLICATE, 13, 5),
    ),
    "invalid YAML": (
        BASE + "scores:\n  lead: [\n",
        (Code.YAML, 12, 1),
    ),
    "unknown band in routing": (
        BASE + "scores:\n  lead:\n    rules: [{name: a, when: true, points: 1}]\n    bands: {hot: 70, cold: 0}\n"
        "routing:\n  registration:\n    - {name: r, when: 'band.lead == \"warm\"', assign: {desk: sales}}\n",
        (Code.UNKNOWN_BAND, 16, 37),
    ),
    "bands out of order": (
        BASE + "scores:\n  lead:\n    rules: [{name: a, when: true, points: 1}]\n    bands: {warm: 40, hot: 70}\n",
        (Code.STRUCTURE, 13, 28),
    ),
    "agent used outside require": (
        BASE + "routing:\n  registration:\n    - {name: r, when: 'agent.open < 3', assign: {desk: sales}}\n",
        (Code.FORBIDDEN, 12, 24),
    ),
    "event field of another event type": (
        BASE + "triggers:\n  - {name: t, on: deposit, when: 'event.volume > 1', queue: q}\n",
        (Code.UNKNOWN_NAME, 11, 35),
    ),
    "unknown event type": (
        BASE + "triggers:\n  - {name: t, on: depositt, when: true, queue: q}\n",
        (Code.STRUCTURE, 11, 19),
    ),
    "scores that depend on each other": (
        BASE + "scores:\n  a:\n    rules: [{name: x, when: 'score.b > 1', points: 1}]\n  b:\n    rules: [{name: y, when: 'score.a > 1', points: 1}]\n",
        (Code.CYCLE, 14, 30),
    ),
    "a schema field that shadows a built-in": (
        BASE + "schema:\n  client:\n    country: string\n",
        (Code.DUPLICATE, 12, 5),
    ),
    "a schema default of the wrong type": (
        BASE + "schema:\n  client:\n    vip: {type: bool, default: 3}\n",
        (Code.TYPE_MISMATCH, 12, 32),
    ),
}


@pytest.mark.parametrize("case", list(BROKEN), ids=list(BROKEN))
def test_broken_rule_file_reports_code_line_and_column(tmp_path: Path, case: str) -> None:
    text, expected = BROKEN[case]
    assert first(tmp_path, text) == expected


def test_every_error_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    text = BASE + (
        "scores:\n  lead:\n    rules:\n"
        "      - {name: a, when: 'client.contry == 1', points: 1}\n"
        "      - {name: b, when: 'lower(1) == \"x\"', points: 1}\n"
        "triggers:\n  - {name: t, when: true, queue: q, cooldown: 14}\n"
    )
    found = errors(tmp_path, text)
    assert [(code, line) for code, line, _, _ in found] == [(Code.UNKNOWN_NAME, 13), (Code.TYPE_MISMATCH, 14), (Code.STRUCTURE, 16)]


def test_errors_in_two_files_name_each_file(tmp_path: Path) -> None:
    write(tmp_path, BASE, "a.yaml")
    write(tmp_path, "desks:\n  - {id: sales}\n", "b.yaml")
    with pytest.raises(RuleError) as info:
        crmcore.load_rules(tmp_path)
    (diagnostic,) = info.value.errors
    assert diagnostic.path.endswith("b.yaml")
    assert "defined twice (first at" in diagnostic.message and "a.yaml:5" in diagnostic.message


def test_missing_path_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    with pytest.raises(RuleError) as info:
        crmcore.load_rules(tmp_path / "nope")
    assert info.value.errors[0].code == Code.FILE


def test_folder_loads_merged_files_and_skips_rule_tests(tmp_path: Path) -> None:
    write(tmp_path, BASE, "broker.yaml")
    write(tmp_path, "scores:\n  lead:\n    rules: [{name: t1, when: 'client.country in TIER1', points: 20}]\n", "scoring.yml")
    write(tmp_path, "rules: .\ncases: []\n", "scoring_test.yaml")
    rules = crmcore.load_rules(tmp_path)
    assert list(rules.scores) == ["lead"]
    assert set(rules.agents) == {"m1", "a1"}


def test_on_is_a_key_not_a_yaml_boolean(tmp_path: Path) -> None:
    rules = crmcore.load_rules(write(tmp_path, BASE + "triggers:\n  - {name: t, on: withdrawal_failed, queue: at_risk, priority: 1000}\n"))
    assert rules.triggers[0].on == "withdrawal_failed"


def test_version_ignores_spelling_but_not_meaning(tmp_path: Path) -> None:
    one = crmcore.loads(BASE + "scores:\n  lead:\n    rules: [{name: a, when: 'client.balance>(100)', points: 1}]\n")
    two = crmcore.loads(BASE + 'scores:\n  lead:\n    rules: [{name: a, when: "client.balance  >  100", points: 1}]\n')
    three = crmcore.loads(BASE + "scores:\n  lead:\n    rules: [{name: a, when: 'client.balance > 101', points: 1}]\n")
    assert one.version == two.version != three.version
    assert len(one.version) == 64


def test_routing_without_fallback_warns(tmp_path: Path) -> None:
    rules = crmcore.loads(BASE + "routing:\n  registration:\n    - {name: r, when: 'client.country == \"DE\"', assign: {desk: sales}}\n")
    (warning,) = rules.warnings
    assert warning.code == Code.NO_FALLBACK and warning.severity == "warning"
    assert "routing.registration" in warning.message


def test_ftd_routing_without_fallback_warns_too() -> None:
    rules = crmcore.loads(BASE + "routing:\n  ftd:\n    - {name: r, when: 'client.country == \"DE\"', assign: {desk: sales}}\n")
    (warning,) = rules.warnings
    assert warning.code == Code.NO_FALLBACK and "routing.ftd can leave a client unmatched" in warning.message
    fine = crmcore.loads(BASE + "routing:\n  ftd:\n    - {name: r, when: true, assign: {desk: sales}}\n")
    assert fine.warnings == []


def test_spec_example_loads(spec_rules: crmcore.RuleSet) -> None:
    assert list(spec_rules.scores["lead"].bands) == [("hot", 70), ("warm", 40), ("cold", 0)]
    assert [r.name for r in spec_rules.routing["registration"]] == ["designated_manager", "ib_designated", "hot", "dach", "everyone_else"]
    assert spec_rules.triggers[0].cooldown == 14 * 86400
    assert spec_rules.warnings == []


def test_a_file_named_twice_is_loaded_once(tmp_path: Path) -> None:
    path = write(tmp_path, BASE)
    assert set(crmcore.load_rules([tmp_path, path]).agents) == {"m1", "a1"}


def test_constant_arithmetic_out_of_range_is_refused() -> None:
    with pytest.raises(RuleError) as info:
        crmcore.loads("scores:\n  s:\n    rules: [{name: a, when: '2w * 9223372036854775807 > 1s', points: 1}]\n")
    assert info.value.code == Code.BAD_STRING


@pytest.mark.parametrize("bands", ["{hot: .nan, cold: 0}", "{hot: .inf, cold: 0}", "{hot: true, cold: 0}", "{hot: '70', cold: 0}"])
def test_band_thresholds_are_finite_numbers(bands: str) -> None:
    with pytest.raises(RuleError) as info:
        crmcore.loads(f"scores:\n  s:\n    rules: [{{name: a, when: true, points: 1}}]\n    bands: {bands}\n")
    assert info.value.code == Code.STRUCTURE


@pytest.mark.parametrize("last", ["true", "'(true)'", "'1 == 1'"])
def test_a_last_rule_that_always_holds_silences_the_fallback_warning(last: str) -> None:
    rules = crmcore.loads(f"desks: [{{id: d}}]\nrouting:\n  registration:\n    - {{name: all, when: {last}, assign: {{desk: d}}}}\n")
    assert rules.warnings == []


def test_an_agent_the_rule_files_do_not_define_is_a_warning_and_the_rule_falls_through(tmp_path: Path) -> None:
    # SPEC 2: agents may also come from the host's store; an unknown agent id falls through
    text = BASE + "routing:\n  registration:\n    - {name: r, when: true, assign: {agent: '\"a9\"'}}\n" \
        "    - {name: rest, when: true, assign: {desk: sales, strategy: round_robin}}\n"
    rules = crmcore.load_rules(write(tmp_path, text))
    (warning,) = rules.warnings
    assert (warning.code, warning.line, warning.column, warning.severity) == (Code.UNKNOWN_AGENT, 12, 45, "warning")
    engine = crmcore.Engine(rules)
    result = engine.handle({"id": "r1", "type": "client_registered", "client_id": "c1",
                            "at": "2026-03-02T10:00:00Z", "country": "DE"})
    assert (result.rule, result.agent) == ("rest", "a1")
    assert [step.outcome for step in result.routing.trace] == ["no_eligible_agent", "assigned"]


def test_a_trigger_with_no_queue_and_nobody_to_notify_loads_and_holds(tmp_path: Path) -> None:
    rules = crmcore.load_rules(write(tmp_path, BASE + "triggers:\n  - {name: rich, when: 'client.balance > 100'}\n"))
    now = datetime(2026, 3, 2, tzinfo=UTC)
    client = {"country": "DE", "registered_at": now, "balance": 500}
    assert rules.evaluate({"client": client, "now": now}).triggers == ["rich"]
