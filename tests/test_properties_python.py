"""Properties of the language in Python: compiled = interpreted, and print/parse round trips."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from crmcore.rules import ast
from crmcore.rules.interpreter import evaluate, truthy
from crmcore.rules.parser import parse
from crmcore.rules.python import compile_expression
from crmcore.rules.unparse import unparse
from tests.strategies import (
    client_rows,
    conditions,
    expression_texts,
    expressions,
    nows,
    scope_for,
    typed,
)


def same(a: Any, b: Any) -> bool:
    """Both sides are Python: the values must be identical, floats bit for bit."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


@given(expressions(), client_rows(), nows())
@example(typed("client.balance / 0"), {}, 0.0)
@example(typed("-7 % 3"), {}, 0.0)
@example(typed("not (client.ftd_amount > 3)"), {"ftd_amount": None}, 0.0)
@example(typed("coalesce(client.region, client.language, 'en')"), {"region": None, "language": None}, 0.0)
def test_compiled_python_equals_the_interpreter(node: ast.Node | None, row: dict[str, Any], now: float) -> None:
    if node is None:
        return
    scope = scope_for(row, now)
    compiled = compile_expression(node, scope.lists)
    expected = evaluate(node, scope)
    got = compiled(scope)
    assert same(got, expected), (unparse(node), got, expected, compiled.__crmcore_source__)  # type: ignore[attr-defined]


@given(conditions(), client_rows(), nows())
def test_compiled_conditions_hold_exactly_when_interpreted_ones_do(node: ast.Node | None, row: dict[str, Any], now: float) -> None:
    if node is None:
        return
    scope = scope_for(row, now)
    assert truthy(compile_expression(node, scope.lists)(scope)) == truthy(evaluate(node, scope))


@given(expression_texts())
def test_printing_then_parsing_gives_the_same_tree(text: str) -> None:
    node = parse(text)
    printed = unparse(node)
    assert ast.strip(parse(printed)) == ast.strip(node)
    assert unparse(parse(printed)) == printed  # canonical text is a fixed point


@given(st.sampled_from(["a - (b - c)", "-(-3)", "not (a and b)", "(if a then b else c) + 1", "x == (a < b)", "if a then (if b then 1 else 2) else 3"]))
def test_brackets_that_matter_are_kept(text: str) -> None:
    assert ast.strip(parse(unparse(parse(text)))) == ast.strip(parse(text))
