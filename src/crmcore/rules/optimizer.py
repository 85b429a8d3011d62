"""Constant folding: a subtree that names nothing is replaced by its value.

A condition that folds to a constant is what the SQL compiler reports as
``Always``/``Never`` and what ``check`` can warn about.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

from crmcore.rules import ast
from crmcore.rules.interpreter import Scope, evaluate

_EMPTY = Scope()


def is_constant(node: ast.Node) -> bool:
    """True when the value does not depend on any name, window or ``now``."""
    return not any(isinstance(n, ast.Name | ast.Window) for n in node.walk()) and not any(
        isinstance(n, ast.Call) and n.func in ("days_since", "hours_since") for n in node.walk()
    )


def fold(node: ast.Node) -> ast.Node:
    """The same typed tree with every constant subtree replaced by a literal."""
    if isinstance(node, ast.Literal | ast.Duration | ast.Name | ast.Window):
        return node
    if is_constant(node) and not isinstance(node, ast.ListLit):
        value = evaluate(node, _EMPTY)
        # a null result is not folded: `x == 1 / 0` must not become the null test `x == null`
        if isinstance(value, bool | int | float | str):
            return ast.Literal(value, span=node.span, type=node.type)
    changes: dict[str, Any] = {}
    for f in fields(node):
        value = getattr(node, f.name)
        if isinstance(value, ast.Node) and f.name not in ("span", "type"):
            changes[f.name] = fold(value)
        elif isinstance(value, tuple):
            changes[f.name] = tuple(fold(v) if isinstance(v, ast.Node) else v for v in value)
    return replace(node, **changes) if changes else node


def constant_value(node: ast.Node) -> tuple[bool, Any]:
    """``(True, value)`` when the expression is constant, else ``(False, None)``."""
    if is_constant(node):
        return True, evaluate(node, _EMPTY)
    return False, None
