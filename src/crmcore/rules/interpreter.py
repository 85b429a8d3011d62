"""The reference semantics: a plain tree-walking interpreter over a typed AST.

Slow and obvious on purpose. The Python compiler (``python.py``) and the SQL
compiler (``sql.py``) are property-tested against it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache
from typing import Any

from crmcore.rules import ast
from crmcore.rules.diagnostics import EvaluationError
from crmcore.rules.schema import CLIENT_DEFAULTS
from crmcore.rules.types import Type
from crmcore.rules.values import (
    DAY,
    HOUR,
    ascii_lower,
    ascii_upper,
    divide,
    infer_stage,
    mod,
    round_half_away,
    to_number,
    to_stamp,
)
from crmcore.rules.windows import Record, WindowFn


@dataclass
class Scope:
    """Everything an expression can see while it runs."""

    client: Mapping[str, Any] = field(default_factory=dict)
    ib: Mapping[str, Any] | None = None
    trading: Mapping[str, Any] | None = None
    agent: Mapping[str, Any] | None = None
    event: Record | None = None  # a dict, or an event model (both answer .get)
    now: timedelta | None = None  # a stamp (values.py)
    scores: Mapping[str, float] = field(default_factory=dict)
    bands: Mapping[str, str] = field(default_factory=dict)
    lists: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=lambda: CLIENT_DEFAULTS)
    window: WindowFn | None = None


def normalise(value: Any, type_: Type | None) -> Any:
    """A host value as the language sees it: timestamps as stamps, Decimals as floats."""
    if value is None or type_ is None:
        return value
    if type_.base == "timestamp":
        return to_stamp(value)
    if type_.base == "number":
        return to_number(value)
    if type_.base == "list":
        return tuple(value)
    return value


def read_name(scope: Scope, node: ast.Name) -> Any:
    parts = node.parts
    root = parts[0]
    if len(parts) == 1:
        return scope.now if root == "now" else scope.lists[root] if root != "ib" else scope.ib
    name = parts[1]
    if root == "client":
        if name == "stage":
            stage = scope.client.get("stage")
            return stage if stage is not None else infer_stage(scope.client)
        value = scope.client.get(name)
        if value is None and name == "balance" and scope.trading is not None:  # the snapshot's (SPEC 11)
            value = scope.trading.get("balance")
        if value is None and name == "registered_at":  # a lead evaluated as they register
            value = scope.now
        if value is None:  # a default fills a missing key and a null alike
            value = scope.defaults.get(name)
        if value is None and node.type is not None and not node.type.nullable:
            raise missing_field(node.dotted, node.type)
    elif root == "ib":
        value = None if scope.ib is None else scope.ib.get(name)
    elif root == "trading":
        value = None if scope.trading is None else scope.trading.get(name)
        if value is None and name == "balance":  # before any snapshot: the client's balance, 0
            value = scope.client.get("balance")
            value = 0 if value is None else value
    elif root == "agent":
        value = None if scope.agent is None else scope.agent.get(name)
    elif root == "event":
        value = None if scope.event is None else scope.event.get(name)
    elif root == "score":
        value = scope.scores.get(name)
    elif root == "band":
        value = scope.bands.get(name)
    else:  # pragma: no cover - the checker admits no other root
        raise KeyError(node.dotted)
    return normalise(value, node.type)


def missing_field(dotted: str, type_: Type) -> EvaluationError:
    """A field the schema says is never null, with no default, absent from the host's record."""
    return EvaluationError(f"{dotted} is required ({type_}) but missing")


def truthy(value: Any) -> bool:
    """Null counts as false in boolean position."""
    return value is not None and bool(value)


@cache
def regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.ASCII)


def _null_or(fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapped(*args: Any) -> Any:
        return None if any(a is None for a in args) else fn(*args)

    return wrapped


def _since(unit: timedelta) -> Callable[[Scope, Any], Any]:
    def fn(scope: Scope, t: Any) -> Any:
        return None if t is None or scope.now is None else (scope.now - t) / unit

    return fn


def _coalesce(*args: Any) -> Any:
    return next((a for a in args if a is not None), None)


FUNCTION_IMPLS: dict[str, Callable[..., Any]] = {
    "days_between": _null_or(lambda a, b: (b - a) / DAY),
    "lower": _null_or(ascii_lower),
    "upper": _null_or(ascii_upper),
    "len": _null_or(len),
    "coalesce": _coalesce,
    "abs": _null_or(abs),
    "min": _null_or(min),
    "max": _null_or(max),
    "round": _null_or(round_half_away),
    "startswith": _null_or(lambda s, p: s.startswith(p)),
    "endswith": _null_or(lambda s, p: s.endswith(p)),
    "contains": _null_or(lambda s, p: p in s),
}

SCOPED_FUNCTIONS: dict[str, Callable[[Scope, Any], Any]] = {
    "days_since": _since(DAY),
    "hours_since": _since(HOUR),
}

_ARITH: dict[str, Callable[[Any, Any], Any]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": divide,
    "%": mod,
}

_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _is_null_literal(node: ast.Node) -> bool:
    return isinstance(node, ast.Literal) and node.value is None


def evaluate(node: ast.Node, scope: Scope) -> Any:
    """The value of a typed expression in a scope (the reference semantics)."""
    if isinstance(node, ast.Literal):
        return node.value
    if isinstance(node, ast.Duration):
        return node.delta
    if isinstance(node, ast.ListLit):
        return tuple(evaluate(item, scope) for item in node.items)
    if isinstance(node, ast.Name):
        return read_name(scope, node)
    if isinstance(node, ast.Neg):
        value = evaluate(node.operand, scope)
        return None if value is None else -value
    if isinstance(node, ast.Not):
        return not truthy(evaluate(node.operand, scope))
    if isinstance(node, ast.BoolOp):
        left = truthy(evaluate(node.left, scope))
        if node.op == "and":
            return left and truthy(evaluate(node.right, scope))
        return left or truthy(evaluate(node.right, scope))
    if isinstance(node, ast.BinOp):
        a, b = evaluate(node.left, scope), evaluate(node.right, scope)
        return None if a is None or b is None else _ARITH[node.op](a, b)
    if isinstance(node, ast.Compare):
        return _compare(node, scope)
    if isinstance(node, ast.Cond):
        branch = node.then if truthy(evaluate(node.test, scope)) else node.else_
        return evaluate(branch, scope)
    if isinstance(node, ast.Call):
        args = [evaluate(arg, scope) for arg in node.args]
        if node.func in SCOPED_FUNCTIONS:
            return SCOPED_FUNCTIONS[node.func](scope, *args)
        return FUNCTION_IMPLS[node.func](*args)
    if isinstance(node, ast.Window):
        if scope.window is None or scope.now is None:
            return None
        shift = node.shift.delta if node.shift is not None else timedelta(0)
        return scope.window(node.source, node.metric, scope.now, node.length.delta, shift)
    raise TypeError(f"cannot evaluate {type(node).__name__}")  # pragma: no cover


def _compare(node: ast.Compare, scope: Scope) -> bool:
    op = node.op
    if op in ("==", "!=") and (_is_null_literal(node.left) or _is_null_literal(node.right)):
        other = node.right if _is_null_literal(node.left) else node.left
        is_null = evaluate(other, scope) is None
        return is_null if op == "==" else not is_null
    a, b = evaluate(node.left, scope), evaluate(node.right, scope)
    if a is None or b is None:
        return False
    if op == "==":
        return bool(a == b)
    if op == "!=":
        return bool(a != b)
    if op == "in":
        return a in b
    if op == "not in":
        return a not in b
    if op == "matches":
        return regex(b).search(a) is not None
    return _ORDER[op](a, b)
