"""The .crm syntax: the SPEC §4 sketch parses, every construct of the model has a spelling that
loads into the same rules as its YAML form, and broken files say where and what."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crmcore
from crmcore.rules.convert import convert
from crmcore.rules.crmsource import load_crm
from crmcore.rules.diagnostics import Code, RuleError, SourceFile

ROOT = Path(__file__).parents[1]

SKETCH = """\
list TIER1 = ["DE", "CH", "GB", "AT", "NL", "SE"]

score lead {
  rule tier1_country when client.country in TIER1 => 20
  rule ib_quality when ib != null => ib.quality * 0.2
  band hot >= 70
  band warm >= 40
  band cold
}

route registration {
  rule hot when band.lead == "hot" => desk "sales-senior" by least_loaded
  rule everyone_else when true => desk "sales-general" by round_robin
}

trigger dormant_30d when client.stage == "funded" and days_since(client.last_trade_at) >= 30 {
  queue dormant priority client.balance
  notify agent
  cooldown 14d
}
"""

DESKS = """\
desk sales-senior
desk sales-general
"""

SKETCH_YAML = """\
version: 1
lists:
  TIER1: ["DE", "CH", "GB", "AT", "NL", "SE"]
desks:
  - {id: sales-senior}
  - {id: sales-general}
scores:
  lead:
    rules:
      - {name: tier1_country, when: 'client.country in TIER1', points: 20}
      - {name: ib_quality, when: 'ib != null', points: 'ib.quality * 0.2'}
    bands: {hot: 70, warm: 40, cold: null}
routing:
  registration:
    - {name: hot, when: 'band.lead == "hot"', assign: {desk: sales-senior, strategy: least_loaded}}
    - {name: everyone_else, when: true, assign: {desk: sales-general, strategy: round_robin}}
triggers:
  - name: dormant_30d
    when: client.stage == "funded" and days_since(client.last_trade_at) >= 30
    queue: dormant
    priority: client.balance
    notify: [agent]
    cooldown: 14d
"""

# Every field of the model, once in each syntax.
EVERYTHING_CRM = """\
version 1
# lists of strings and numbers
list TIER1 = ["DE", "CH"]
list SIZES = [1, 2.5, -3]
list EMPTY = []

schema client {
  utm_campaign: string?
  vip: bool = false
  demo_trades: int = 0
  tags: list<string> = ["a", b]
  note: "string?"
  since: timestamp = null
}

desk sales {
  name "Sales desk"
  kind sales
  sla { first_contact 2h }
  on_sla_breach reassign
}
desk retention { kind retention }

agent m1 { name "Max" desk sales role manager }
agent a1 {
  name "Anna"
  desk sales
  manager m1
  languages de, en
  countries [DE, AT, CH]
  capacity 40
  weight 2.5
  active false
  hours "Mon-Fri 09:00-18:00 Europe/Berlin"
  away_until "2026-03-01T00:00:00Z"
  email "anna@example.com"
}
agent r1 { desk retention languages en }

score lead {
  rule tier1 when client.country in TIER1 => 20
  rule always => 1                     # `when` may be left out: it holds
  rule quoted when client.vip => if client.vip then 5 else 0
  band "very hot" >= 70.5
  band warm >= -10
  band cold
}

route registration {
  rule designated when client.manager_id != null => agent client.manager_id
  rule german when client.country == "DE"
    => desk sales by round_robin
       require client.language in agent.languages   # an agent who speaks it
  rule pooled when client.vip => desk sales by pool
  rule rest when true => desk sales by weighted
}
route ftd {
  rule to_retention when true => desk retention by least_loaded
}

trigger failed on withdrawal_failed {
  queue at_risk
  priority 1000 + event.amount / 100
  actions "Call the client", "Check \\"why\\""
  notify agent, manager, desk, client
  cooldown 1d
}
trigger nudge when client.stage == "registered"
                   and hours_since(client.registered_at) >= 24 {
  notify client
  cooldown 48h
}

target ftd_count = 20 per agent per month
target net_deposits = 250000 per desk per month for desk sales
target first_contact_sla_rate = 0.9 per team per week
"""

EVERYTHING_YAML = """\
version: 1
lists:
  TIER1: [DE, CH]
  SIZES: [1, 2.5, -3]
  EMPTY: []
schema:
  client:
    utm_campaign: string?
    vip: {type: bool, default: false}
    demo_trades: {type: int, default: 0}
    tags: {type: list<string>, default: [a, b]}
    note: string?
    since: {type: timestamp}
desks:
  - {id: sales, name: Sales desk, kind: sales, sla: {first_contact: 2h}, on_sla_breach: reassign}
  - {id: retention, kind: retention}
agents:
  - {id: m1, name: Max, desk: sales, role: manager}
  - {id: a1, name: Anna, desk: sales, manager: m1, languages: [de, en], countries: [DE, AT, CH],
     capacity: 40, weight: 2.5, active: false, hours: "Mon-Fri 09:00-18:00 Europe/Berlin",
     away_until: "2026-03-01T00:00:00Z", email: anna@example.com}
  - {id: r1, desk: retention, languages: [en]}
scores:
  lead:
    rules:
      - {name: tier1, when: 'client.country in TIER1', points: 20}
      - {name: always, points: 1}
      - {name: quoted, when: client.vip, points: 'if client.vip then 5 else 0'}
    bands: {very hot: 70.5, warm: -10, cold: null}
routing:
  registration:
    - {name: designated, when: 'client.manager_id != null', assign: {agent: client.manager_id}}
    - name: german
      when: 'client.country == "DE"'
      assign: {desk: sales, strategy: round_robin, require: 'client.language in agent.languages'}
    - {name: pooled, when: client.vip, assign: {desk: sales, strategy: pool}}
    - {name: rest, when: 'true', assign: {desk: sales, strategy: weighted}}
  ftd:
    - {name: to_retention, when: 'true', assign: {desk: retention, strategy: least_loaded}}
triggers:
  - name: failed
    on: withdrawal_failed
    queue: at_risk
    priority: '1000 + event.amount / 100'
    actions: ["Call the client", 'Check "why"']
    notify: [agent, manager, desk, client]
    cooldown: 1d
  - name: nudge
    when: 'client.stage == "registered" and hours_since(client.registered_at) >= 24'
    notify: [client]
    cooldown: 48h
targets:
  - {metric: ftd_count, per: agent, period: month, value: 20}
  - {metric: net_deposits, per: desk, period: month, value: 250000, desk: sales}
  - {metric: first_contact_sla_rate, per: team, period: week, value: 0.9}
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def crm_errors(tmp_path: Path, text: str) -> list[crmcore.Diagnostic]:
    with pytest.raises(RuleError) as info:
        crmcore.load_rules(write(tmp_path, "rules.crm", text))
    return info.value.errors


# ---- the sketch and the constructs --------------------------------------------------------------

def test_the_spec_sketch_parses_as_written() -> None:
    doc, problems = load_crm(SourceFile("sketch.crm", SKETCH))
    assert problems == []
    assert doc is not None
    assert doc.data["scores"]["lead"]["bands"] == {"hot": 70, "warm": 40, "cold": None}
    assert doc.data["routing"]["registration"][0]["assign"] == {"desk": "sales-senior", "strategy": "least_loaded"}
    assert doc.data["triggers"][0] == {
        "name": "dormant_30d", "when": 'client.stage == "funded" and days_since(client.last_trade_at) >= 30',
        "queue": "dormant", "priority": "client.balance", "notify": ["agent"], "cooldown": "14d",
    }


def test_the_sketch_loads_into_the_same_rules_as_its_yaml_form(tmp_path: Path) -> None:
    crm = crmcore.load_rules([write(tmp_path, "sketch.crm", SKETCH), write(tmp_path, "desks.crm", DESKS)])
    yaml = crmcore.loads(SKETCH_YAML)
    assert crm.canonical == yaml.canonical
    assert crm.version == yaml.version
    assert crm.scores["lead"].band(10) == "cold"


def test_every_construct_loads_into_the_same_rules_as_yaml(tmp_path: Path) -> None:
    crm = crmcore.loads(EVERYTHING_CRM, "everything.crm")
    yaml = crmcore.loads(EVERYTHING_YAML, "everything.yaml")
    assert crm.canonical == yaml.canonical
    assert crm.version == yaml.version
    agent = crm.agents["a1"]
    assert (agent.capacity, agent.weight, agent.active, agent.languages) == (40, 2.5, False, ["de", "en"])
    assert agent.away_until is not None and agent.away_until.year == 2026
    assert crm.triggers[0].actions == ("Call the client", 'Check "why"')


def test_a_folder_may_mix_yaml_and_crm_files(tmp_path: Path) -> None:
    write(tmp_path, "rules/sketch.crm", SKETCH)
    write(tmp_path, "rules/desks.yaml", "desks: [{id: sales-senior}, {id: sales-general}]\n")
    assert crmcore.load_rules(tmp_path / "rules").version == crmcore.loads(SKETCH_YAML).version


def test_one_rule_set_in_both_forms_in_one_folder_is_refused_not_loaded_twice(tmp_path: Path) -> None:
    write(tmp_path, "rules/sketch.crm", SKETCH + DESKS)
    write(tmp_path, "rules/sketch.yaml", SKETCH_YAML)
    with pytest.raises(RuleError) as info:
        crmcore.load_rules(tmp_path / "rules")
    assert {d.code for d in info.value.errors} == {Code.DUPLICATE}


def test_comments_and_line_breaks_may_go_anywhere_even_inside_a_condition() -> None:
    text = """\
    # leads
    score lead {   # the lead score
      rule r
        when client.country == "DE"   # Germany
         and client.balance > 100     # with money
        => 10
      band hot >= 5 band cold
    }
    """
    rules = crmcore.loads(textwrap.dedent(text), "lead.crm")
    expr = rules.scores["lead"].rules[0].when
    assert expr.canonical == 'client.country == "DE" and client.balance > 100'
    assert "#" not in expr.text


def test_keywords_are_names_where_a_name_is_expected() -> None:
    text = 'desk desk\nagent agent { desk desk }\nscore rule { rule when when true => 1 band band }\n'
    rules = crmcore.loads(text, "k.crm")
    assert rules.agents["agent"].desk == "desk"
    assert rules.scores["rule"].rules[0].name == "when"


def test_a_quoted_name_may_hold_any_text() -> None:
    text = 'desk "s-1" { name "Desk \\\\ \\"one\\"\\n" }\nscore s { rule r => 1 band "very hot" >= 1 band "true" }\n'
    rules = crmcore.loads(text, "q.crm")
    assert rules.desks["s-1"].name == 'Desk \\ "one"\n'
    assert [b for b, _ in rules.scores["s"].bands] == ["very hot", "true"]


def test_the_examples_in_both_forms_are_the_same_rules() -> None:
    yaml = crmcore.load_rules(ROOT / "examples" / "rules")
    crm = crmcore.load_rules(ROOT / "examples" / "rules-crm")
    assert crm.canonical == yaml.canonical
    assert crm.version == yaml.version


@pytest.mark.parametrize("name", ["broker", "scoring", "routing", "retention"])
def test_each_example_file_is_the_same_in_both_forms(name: str) -> None:
    """Both files print the same canonical YAML: the same model, expressions by meaning."""
    yaml = _source(ROOT / "examples" / "rules" / f"{name}.yaml")
    crm = _source(ROOT / "examples" / "rules-crm" / f"{name}.crm")
    assert convert(crm, "yaml") == convert(yaml, "yaml")


def _source(path: Path) -> SourceFile:
    return SourceFile(str(path), path.read_text(encoding="utf-8"))


# ---- diagnostics --------------------------------------------------------------------------------

def test_a_syntax_error_names_file_line_column_and_shows_a_caret(tmp_path: Path) -> None:
    (error,) = crm_errors(tmp_path, "desk sales\nscore lead {\n  rule a when true 20\n}\n")
    assert (error.code, error.line, error.column) == (Code.CRM, 3, 20)
    assert "expected" in error.message and "'=>'" in error.message
    assert error.render().endswith("    " + "  rule a when true 20\n" + " " * (4 + 19) + "^")
    assert error.path.endswith("rules.crm")


def test_a_syntax_error_inside_a_condition_is_an_expression_error(tmp_path: Path) -> None:
    (error,) = crm_errors(tmp_path, "score lead {\n  rule a when client.country = \"DE\" => 1\n}\n")
    assert (error.code, error.line, error.column) == (Code.SYNTAX, 2, 30)
    assert "'=='" in error.message


def test_an_unterminated_block_says_the_file_ends_too_early(tmp_path: Path) -> None:
    (error,) = crm_errors(tmp_path, "score lead {\n  rule a => 1\n")
    assert error.code == Code.CRM
    assert "ends too early" in error.message
    assert error.line == 3


def test_type_errors_point_into_the_crm_file_all_at_once(tmp_path: Path) -> None:
    text = """\
    score lead {
      rule a when client.contry == "DE" => 1
      rule b when client.country == "DE"
               and client.balance > "x" => 2
      band hot >= 1
      band cold
    }
    trigger t when nosuch.thing { notify agent }
    """
    found = [(d.code, d.line, d.column) for d in crm_errors(tmp_path, text)]
    assert found == [(Code.UNKNOWN_NAME, 2, 15), (Code.TYPE_MISMATCH, 4, 31), (Code.UNKNOWN_NAME, 8, 16)]


def test_an_unknown_setting_is_reported_at_its_key(tmp_path: Path) -> None:
    (error,) = crm_errors(tmp_path, "desk sales\nagent a1 {\n  desk sales\n  capasity 3\n}\n")
    assert (error.code, error.line, error.column) == (Code.STRUCTURE, 4, 3)
    assert "capasity" in error.message


def test_a_wrong_value_is_reported_at_the_value(tmp_path: Path) -> None:
    (error,) = crm_errors(tmp_path, "desk sales { kind sale }\n")
    assert (error.code, error.line, error.column) == (Code.STRUCTURE, 1, 19)


def test_duplicates_inside_one_file_are_reported(tmp_path: Path) -> None:
    text = """\
    list A = [1]
    list A = [2]
    desk s { kind sales kind retention }
    score lead {
      rule a => 1
      band hot >= 1
      band hot >= 0
    }
    route ftd { rule a => desk s by pool by round_robin }
    """
    found = [(d.code, d.line) for d in crm_errors(tmp_path, text)]
    assert found == [(Code.DUPLICATE, 2), (Code.DUPLICATE, 3), (Code.DUPLICATE, 7), (Code.DUPLICATE, 9)]


def test_a_reference_error_points_at_the_name(tmp_path: Path) -> None:
    (error,) = crm_errors(tmp_path, "desk sales\nroute ftd {\n  rule a when true => desk sails by pool\n}\n")
    assert (error.code, error.line, error.column) == (Code.REFERENCE, 3, 28)


def test_a_band_threshold_needs_greater_or_equal(tmp_path: Path) -> None:
    (error,) = crm_errors(tmp_path, "score s {\n  rule a => 1\n  band hot > 3\n  band cold\n}\n")
    assert (error.code, error.line, error.column) == (Code.STRUCTURE, 3, 12)


@pytest.mark.parametrize("text", ["", "# only a comment\n", "\n\n"])
def test_an_empty_crm_file_is_an_empty_rule_set(text: str) -> None:
    assert crmcore.loads(text, "empty.crm").scores == {}


@pytest.mark.parametrize("text", [
    "score s { rule a => " + "(" * 150 + "1" + ")" * 150 + " }",
    "score s { rule a => " + " + ".join(["1"] * 3000) + " }",
    "desk \"unterminated\n",
    "desk a { b [1, [2, [3]]] }",
    "\x00",
    "route ftd { rule a => }",
])
def test_hostile_input_gives_a_rule_error_not_a_crash(text: str) -> None:
    with pytest.raises(RuleError) as info:
        crmcore.loads(text, "hostile.crm")
    assert info.value.errors[0].line >= 1


# ---- never a crash (SPEC §10) -------------------------------------------------------------------

CRM_TOKENS = [
    "list", "schema", "desk", "agent", "score", "rule", "when", "band", "route", "by", "require",
    "trigger", "on", "priority", "target", "per", "for", "version", "{", "}", "[", "]", "=>", "=",
    ":", ",", ">=", "x", "client.country", "20", "-3", "1.5", "14d", '"q"', "'s'", "true", "null",
    "#", "\n", "string?", "(", ")", "and", "\\", '"', "\x00", "é",
]


def _survives(text: str) -> None:
    try:
        crmcore.loads(text, "fuzz.crm")
    except RuleError as err:
        assert err.diagnostics and all(d.line >= 1 and d.column >= 1 and d.code for d in err.diagnostics)


@settings(deadline=5000, max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(CRM_TOKENS), max_size=40).map(" ".join))
def test_random_crm_token_soup_never_escapes(text: str) -> None:
    _survives(text)


@settings(deadline=5000, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([SKETCH, EVERYTHING_CRM]), st.lists(st.tuples(st.integers(0, 3000), st.sampled_from(["", *CRM_TOKENS]), st.integers(0, 3)), max_size=4))
def test_mutated_crm_files_load_or_raise_rule_error(text: str, edits: list[tuple[int, str, int]]) -> None:
    for at, insert, delete in edits:
        at %= len(text) + 1
        text = text[:at] + insert + text[at + delete:]
    _survives(text)


def test_the_example_in_the_language_reference_loads() -> None:
    doc = (ROOT / "docs" / "language.md").read_text(encoding="utf-8")
    section = doc[doc.index("## The `.crm` syntax"):]
    example = section[section.index("```text\n") + len("```text\n"):]
    example = example[:example.index("```")]
    rules = crmcore.loads(example, "language.md.crm")
    assert set(rules.scores) == {"lead"}
    assert [route.name for route in rules.routing["registration"]][-1] == "everyone_else"
    assert rules.triggers[1].when.canonical == "true"


def test_every_broken_declaration_is_reported_and_the_rest_still_checked(tmp_path: Path) -> None:
    text = """\
    desk sales
    score lead {
      rule a when client.country = "DE" => 1
    }
    trigger t when client.contry == "DE" { notify agent }
    route ftd { rule a => }
    agent a1 { desk sales }
    """
    found = [(d.code, d.line) for d in crm_errors(tmp_path, text)]
    assert found == [(Code.SYNTAX, 3), (Code.UNKNOWN_NAME, 5), (Code.CRM, 6)]


def test_an_unclosed_block_is_named(tmp_path: Path) -> None:
    errors = crm_errors(tmp_path, "desk sales {\n  kind sales\nagent a1 { desk sales }\n")
    assert (errors[0].line, errors[0].column) == (3, 10)
    assert "is the block of the desk at line 1 closed with '}'?" in errors[0].message


def test_the_spec_sketch_loads_as_it_is_with_its_desks_left_to_the_host(tmp_path: Path) -> None:
    # SPEC 4's sketch declares no desks: the desks it names are the host's (W502), not errors
    path = tmp_path / "sketch.crm"
    path.write_text(SKETCH)
    rules = crmcore.load_rules(path)
    assert [(w.code, w.line) for w in rules.warnings] == [(Code.UNDECLARED_DESK, 12), (Code.UNDECLARED_DESK, 13)]
    assert list(rules.desks) == ["sales-senior", "sales-general"]  # named: known to the engine and reports
    assert crmcore.load_rules(tmp_path).version == rules.version  # not part of the canonical form
    engine = crmcore.Engine(rules)
    result = engine.handle({"id": "r1", "type": "client_registered", "client_id": "c1",
                            "at": "2026-03-01T10:00:00Z", "country": "DE"})
    assert (result.scores["lead"], result.bands["lead"]) == (20, "cold")
    # nobody on the desk: the client waits in its pool, and with no managers the admins are told
    assert (result.outcome, result.desk) == ("unassigned", "sales-general")
    assert [(n.kind, n.recipient) for n in result.notifications] == [("unassigned", "admins")]


def test_a_desk_not_declared_where_desks_are_is_still_an_error(tmp_path: Path) -> None:
    path = tmp_path / "rules.crm"
    path.write_text('desk "sales-general" {}\n' + SKETCH)
    with pytest.raises(RuleError) as info:
        crmcore.load_rules(path)
    assert [(d.code, d.line) for d in info.value.diagnostics] == [(Code.REFERENCE, 13)]


def test_an_unclosed_block_before_the_next_declaration_is_one_error(tmp_path: Path) -> None:
    text = "score s {\n  rule r when true => 1\n  band b\n\ntrigger t when true {\n  notify agent\n}\n"
    errors = crm_errors(tmp_path, text)
    assert [(e.line, e.column) for e in errors] == [(5, 1)]  # not a second one at 'rigger'
    assert "is the block of the score at line 1 closed with '}'?" in errors[0].message


def test_an_undeclared_desk_of_any_name_is_left_to_the_host() -> None:
    # found by the mutation fuzz test: a host desk name that is no identifier raised pydantic's
    # ValidationError instead of loading (desks are not declared: the names are the host's)
    rules = crmcore.loads('agent a1 { desk "{sales-general" }\n'
                          'route registration { rule all when true => desk "{sales-general" by round_robin }\n', "x.crm")
    assert list(rules.desks) == ["{sales-general"]
