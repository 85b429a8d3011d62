"""Every expression shown in docs/language.md type-checks (and evaluates without error)."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from crmcore.rules.checker import check_text
from crmcore.rules.interpreter import Scope, evaluate
from crmcore.rules.schema import EVENT_FIELDS, Env
from crmcore.rules.types import STRING, list_of

DOC = Path(__file__).parents[1] / "docs" / "language.md"
BLOCK = re.compile(r"^```crm([^\n]*)\n(.*?)^```", re.S | re.M)
ENV = Env(lists={"TIER1": list_of(STRING), "DACH": list_of(STRING)}, bands={"lead": ("hot", "warm", "cold")})


def doc_expressions() -> list[tuple[str, str]]:
    found = []
    for label, body in BLOCK.findall(DOC.read_text()):
        for line in body.splitlines():
            line = line.split("#", 1)[0].strip() if line.lstrip().startswith("#") else line.strip()
            if line:
                found.append((label.strip(), line))
    return found


EXPRESSIONS = doc_expressions()


def env_for(label: str) -> Env:
    if label == "require":
        return ENV.with_agent()
    if label.startswith("on="):
        event = label.removeprefix("on=")
        return ENV.with_event(event, EVENT_FIELDS[event])
    assert label == "", f"unknown block label {label!r}"
    return ENV


def test_the_doc_has_examples() -> None:
    assert len(EXPRESSIONS) >= 40


@pytest.mark.parametrize(("label", "text"), EXPRESSIONS, ids=[t for _, t in EXPRESSIONS])
def test_doc_expression_checks_and_runs(label: str, text: str) -> None:
    node = check_text(text, env_for(label))
    scope = Scope(client={"country": "DE", "registered_at": 1.7e9, "stage": "funded", "email": "a@b.c"}, now=timedelta(seconds=1.7e9 + 86400),
                  lists={"TIER1": ("DE",), "DACH": ("DE", "AT", "CH")}, scores={"lead": 50}, bands={"lead": "warm"},
                  agent={"id": "a1", "languages": ["de"], "countries": ["DE"], "open": 3, "weight": 1}, event={"amount": 10},
                  window=lambda *args: 0)
    evaluate(node, scope)
