"""`crmcore fmt` keeps comments: each is printed on its own line above the list, field, desk,
agent, score, rule, band, route or trigger it stood above or in, in either syntax, and is
found at the same place when the output is formatted again."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import crmcore
from crmcore.rules.convert import convert
from crmcore.rules.diagnostics import SourceFile

from .test_crm_roundtrip import rule_sets

ROOT = Path(__file__).parents[1]
OTHER = {"yaml": "crm", "crm": "yaml"}


def own_line_comments(text: str) -> list[str]:
    """fmt prints every comment on a line of its own."""
    return [line.strip() for line in text.splitlines() if line.lstrip().startswith("#")]


def example_files() -> list[Path]:
    return sorted((ROOT / "examples" / "rules").glob("*.yaml")) + sorted((ROOT / "examples" / "rules-crm").glob("*.crm"))


@pytest.mark.parametrize("path", example_files(), ids=lambda p: p.name)
def test_every_comment_of_the_examples_survives_both_ways(path: Path) -> None:
    text = path.read_text()
    written = [line.strip() for line in text.splitlines() if "#" in line]
    assert written, "the examples are commented"
    syntax = path.suffix.lstrip(".")
    there = convert(SourceFile(str(path), text), OTHER[syntax])
    back = convert(SourceFile(f"converted.{OTHER[syntax]}", there), syntax)
    # none of the examples' '#' is inside a string, and each is a whole comment on its line
    assert Counter(own_line_comments(there)) == Counter(own_line_comments(back)) == Counter(
        line[line.index("#"):].rstrip() for line in written
    )
    assert convert(SourceFile(f"again.{syntax}", back), syntax) == back  # stable


YAML = """\
# Northwind: the header, apart from what follows

version: 1

# the desks
desks:
  - id: sales  # where leads start
    # a comment inside the desk
    name: Sales

# a score
scores:
  lead:
    rules:
      - name: tier1   # a rule
        when: 'client.country == "D # E"'  # a text holds the first '#'
        points: 20
      # the last rule
      - name: rest
        when: true
        points: 'client.email_opens'
    bands: {hot: 20, cold: 0}  # after the bands

triggers:
  - name: kyc_nudge
    when: 'client.stage == "registered"'
    # a comment between settings
    queue: 'kyc#queue'
    notify: [agent]
# the end of the file
"""

CRM = """\
# Northwind: the header, apart from what follows

# the desks
# where leads start
# a comment inside the desk
desk sales {
  name "Sales"
}

# a score
score lead {
  # a rule
  # a text holds the first '#'
  rule tier1 when client.country == "D # E" => 20
  # the last rule
  rule rest when true => client.email_opens
  # after the bands
  band hot >= 20
  band cold >= 0
}

# a comment between settings
trigger kyc_nudge when client.stage == "registered" {
  queue "kyc#queue"
  notify agent
}

# the end of the file
"""


def test_each_comment_goes_above_what_it_stood_above_or_in() -> None:
    crm = convert(SourceFile("rules.yaml", YAML), "crm")
    assert crm == CRM  # a section's comment (desks:, scores:) goes above its first item
    assert crmcore.loads(crm, "rules.crm").version == crmcore.loads(YAML, "rules.yaml").version
    assert convert(SourceFile("rules.crm", crm), "crm") == crm


def test_a_crm_file_keeps_its_comments_in_yaml_and_back() -> None:
    source = (
        "# header\n\n"
        "list TIER1 = [\"DE\", \"CH\"]  # core markets\n"
        "desk sales {}\n"
        "# retention, a comment above a declaration\n"
        "desk retention { kind retention }\n"
        "trigger t when true {  # always\n"
        "  queue q\n"
        "  # the cooldown\n"
        "  cooldown 1d\n"
        "}\n"
        "# the end\n"
    )
    text = convert(SourceFile("r.crm", source), "yaml")
    assert text == (
        "# header\n\n"
        "version: 1\n\n"
        "lists:\n"
        "  # core markets\n"
        "  TIER1: [DE, CH]\n\n"
        "desks:\n"
        "  - {id: sales}\n"
        "  # retention, a comment above a declaration\n"
        "  - {id: retention, kind: retention}\n\n"
        "triggers:\n"
        "  # always\n"
        "  # the cooldown\n"
        "  - name: t\n"
        "    when: true\n"
        "    queue: q\n"
        "    cooldown: 1d\n\n"
        "# the end\n"
    )
    assert convert(SourceFile("r.yaml", text), "crm") == (
        "# header\n\n"
        "# core markets\n"
        "list TIER1 = [\"DE\", \"CH\"]\n\n"
        "desk sales\n\n"
        "# retention, a comment above a declaration\n"
        "desk retention {\n  kind retention\n}\n\n"
        "# always\n"
        "# the cooldown\n"
        "trigger t when true {\n  queue q\n  cooldown 1d\n}\n\n"
        "# the end\n"
    )


def test_hash_signs_in_text_are_not_comments() -> None:
    yaml_text = ("version: 1\nlists:\n  L: [a#b, 'c # d']\ndesks:\n  - id: a\n    name: 'x # y'\n"
                 "agents:\n  - {id: b, desk: a, email: \"p # q\", hours: \"Mon-Fri 09:00-18:00 UTC\"}\n")
    crm = convert(SourceFile("r.yaml", yaml_text), "crm")
    assert "#" not in crm.replace("a#b", "").replace("c # d", "").replace("x # y", "").replace("p # q", "")
    back = convert(SourceFile("r.crm", crm), "yaml")
    assert own_line_comments(back) == []


def test_a_file_of_comments_only_keeps_them() -> None:
    assert convert(SourceFile("r.yaml", "# nothing yet\n"), "crm") == "# nothing yet\n"
    assert convert(SourceFile("r.crm", "# nothing yet\n"), "yaml") == "version: 1\n\n# nothing yet\n"


COMMENT = st.text(alphabet="ab #'\"{}:-\\é", max_size=12).map(lambda text: "#" + text.rstrip())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(rule_sets(), st.data())
def test_comments_anywhere_survive_yaml_to_crm_to_yaml(data: dict, draw: st.DataObject) -> None:
    original = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    lines = original.split("\n")
    spots = draw.draw(st.lists(st.tuples(st.integers(0, len(lines)), COMMENT, st.booleans()), max_size=6))
    for where, comment, trailing in sorted(spots, reverse=True):
        if trailing and where < len(lines) and lines[where].strip():
            lines[where] += "  " + comment
        else:
            indent = " " * draw.draw(st.integers(0, 6))
            lines.insert(where, indent + comment)
    commented = "\n".join(lines)
    try:  # a comment put inside a quoted text spanning lines is text: that file is skipped
        assume(yaml.safe_load(commented) == yaml.safe_load(original))
        expected = crmcore.loads(commented, "original.yaml")
    except (yaml.YAMLError, crmcore.RuleError):
        assume(False)
        raise
    want = Counter(comment.rstrip() for _, comment, _ in spots)
    want_in_file = Counter(
        line[line.index("#", line.index(" #") + 1 if " #" in line else 0):].rstrip()
        for line in commented.split("\n") if "#" in line
    )
    assume(want == want_in_file)  # no other '#' in the file (a text of the rule set may hold one)
    crm = convert(SourceFile("original.yaml", commented), "crm")
    back = convert(SourceFile("converted.crm", crm), "yaml")
    assert Counter(own_line_comments(crm)) == want
    assert Counter(own_line_comments(back)) == want
    assert crmcore.loads(crm, "converted.crm").version == crmcore.loads(back, "converted.yaml").version == expected.version
    assert convert(SourceFile("again.crm", crm), "crm") == crm
    assert convert(SourceFile("again.yaml", back), "yaml") == back
