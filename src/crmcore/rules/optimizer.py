"""Constant expressions: a subtree that names nothing has one value, known at load time.

A condition that is constant is what the SQL compiler reports as ``Always``/``Never``,
what ``check`` uses for the routing warning, and where constant arithmetic is range-checked.
(A computed null is never turned into the literal ``null``: ``x == 1 / 0`` is not ``x == null``.)
"""

from __future__ import annotations

from typing import Any

from crmcore.rules import ast
from crmcore.rules.interpreter import Scope, evaluate

_EMPTY = Scope()


def is_constant(node: ast.Node) -> bool:
    """True when the value does not depend on any name, window or ``now``."""
    return not any(
        isinstance(n, ast.Name | ast.Window) or (isinstance(n, ast.Call) and n.func in ("days_since", "hours_since"))
        for n in node.walk()
    )


def constant_value(node: ast.Node) -> tuple[bool, Any]:
    """``(True, value)`` when the expression is constant, else ``(False, None)``."""
    if is_constant(node):
        return True, evaluate(node, _EMPTY)
    return False, None
