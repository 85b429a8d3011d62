"""Guarantee (SPEC §10): any input gives a result or a RuleError with a position — never another
exception, never a hang."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crmcore
from crmcore.rules.checker import check_text
from crmcore.rules.diagnostics import RuleError
from crmcore.rules.schema import Env
from crmcore.rules.types import STRING, list_of

ENV = Env(lists={"TIER1": list_of(STRING)}, bands={"lead": ("hot", "warm", "cold")})
EXAMPLES = Path(__file__).parents[1] / "examples" / "rules"

SEEDS = [
    "client.country in TIER1 and not (client.balance > 100)",
    "client.kyc_submitted_at - client.registered_at <= 24h",
    "if ib != null then ib.quality * 0.2 else 0",
    "days_since(client.last_trade_at) >= 30 and deposits.count(30d) < deposits.count(30d, 30d)",
    "lower(client.email) matches '(?i)@(gmail|yahoo)\\.com$' or startswith(client.source, \"ib\")",
    "coalesce(client.language, 'en') not in ['de', 'fr'] and band.lead == 'hot'",
    "round(abs(-client.balance % 7)) + len(TIER1) / 2 - min(1, 2.5) > max(score.lead, 3)",
]

TOKENS = [
    "client", ".", "country", "ib", "quality", "(", ")", "[", "]", ",", "and", "or", "not", "in",
    "matches", "if", "then", "else", "==", "!=", "<", ">=", "+", "-", "*", "/", "%", "30d", "1.5",
    "42", "'x'", '"y"', "null", "true", "now", "TIER1", "days_since", "coalesce", "deposits", "count",
    "__class__", "_x", "\\", "'", '"', "=", "!", "&&", "\n", "\t", "9" * 30, "é", "\x00",
]


def survives(text: str) -> None:
    try:
        node = check_text(text, ENV)
    except RuleError as err:
        assert err.diagnostics, "a RuleError always carries a diagnostic"
        for d in err.diagnostics:
            assert d.line >= 1 and d.column >= 1 and d.code
    else:
        assert node.type is not None


@settings(deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_random_text_never_escapes_as_another_exception(text: str) -> None:
    survives(text)


@settings(deadline=2000)
@given(st.lists(st.sampled_from(TOKENS), max_size=40).map(" ".join))
def test_random_token_soup_never_escapes(text: str) -> None:
    survives(text)


@st.composite
def mutated(draw: st.DrawFn, seeds: list[str]) -> str:
    text = draw(st.sampled_from(seeds))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["insert", "delete", "replace", "token"]))
        if kind == "insert":
            text = text[:at] + draw(st.characters()) + text[at:]
        elif kind == "delete":
            text = text[:at] + text[at + 1 :]
        elif kind == "replace":
            text = text[:at] + draw(st.characters()) + text[at + 1 :]
        else:
            text = text[:at] + " " + draw(st.sampled_from(TOKENS)) + " " + text[at:]
    return text


@settings(deadline=2000)
@given(mutated(SEEDS))
def test_mutated_expressions_never_escape(text: str) -> None:
    survives(text)


def test_deep_nesting_is_refused_not_a_crash() -> None:
    for text in ["(" * 5000 + "1" + ")" * 5000, "not " * 5000 + "true", "- " * 5000 + "1", "a or " * 3000 + "a", "[" * 3000]:
        survives(text)


def test_pathological_regex_is_refused_at_load_time() -> None:
    for pattern in ["(a+)+$", "(a|a)+$", "(\\w+\\s?)*$", "(.*a){20}", "^(a?){30}a{30}$", "(a{1,100}){1,100}$", "(\\w{1,100}\\s?){1,100}$"]:
        try:
            check_text(f"client.email matches '{pattern}'", ENV)
        except RuleError as err:
            assert err.code == "E205"
        else:
            raise AssertionError(f"{pattern} was accepted")


RULE_FILE = (EXAMPLES / "scoring.yaml").read_text()


@settings(deadline=5000, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(mutated([RULE_FILE]))
def test_mutated_rule_files_load_or_raise_rule_error(text: str) -> None:
    try:
        crmcore.loads(text, "scoring.yaml")
    except RuleError as err:
        assert err.diagnostics and all(d.line >= 1 and d.column >= 1 and d.code for d in err.diagnostics)


def test_hostile_yaml_is_refused_not_a_crash() -> None:
    laughs = "a: &a [1,1,1,1,1,1,1,1,1,1]\n" + "".join(
        f"{n}: &{n} [{', '.join(['*' + p] * 10)}]\n" for p, n in zip("abcdef", "bcdefg", strict=True)
    )
    for text in ["a: " + "[" * 100_000 + "]" * 100_000, "a: " + "{x: " * 5000 + "1" + "}" * 5000, laughs]:
        try:
            crmcore.loads(text)
        except RuleError as err:
            assert err.code == "E300"
        else:
            raise AssertionError("accepted")


def test_rules_cannot_reach_python() -> None:
    for text in [
        "client.__class__",
        "client.__dict__ == null",
        "client._private",
        "__import__('os')",
        "().__class__",
        "eval('1')",
        "client.country.__len__()",
        "lower.__globals__",
    ]:
        try:
            check_text(text, ENV)
        except RuleError:
            continue
        raise AssertionError(f"{text!r} was accepted")
