"""AST -> canonical expression text, with the fewest brackets that keep its meaning.

``parse(unparse(node))`` gives the same tree (property-tested). The canonical text
is what the rule-set version hashes, so YAML and ``.crm`` spellings of one rule
(quotes, spacing, redundant brackets) have one version.
"""

from __future__ import annotations

from decimal import Decimal

from crmcore.rules import ast

# binding strength, loosest first (SPEC §3)
IF, OR, AND, NOT, COMPARE, SUM, PRODUCT, UNARY, POSTFIX = range(9)

_BINARY_LEVEL = {"+": SUM, "-": SUM, "*": PRODUCT, "/": PRODUCT, "%": PRODUCT}


def number_text(value: int | float) -> str:
    if isinstance(value, int):
        return str(value)
    text = format(Decimal(repr(value)), "f")
    return text if "." in text else text + ".0"


def string_text(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
    return f'"{escaped}"'


def _level(node: ast.Node) -> int:
    if isinstance(node, ast.Cond):
        return IF
    if isinstance(node, ast.BoolOp):
        return OR if node.op == "or" else AND
    if isinstance(node, ast.Not):
        return NOT
    if isinstance(node, ast.Compare):
        return COMPARE
    if isinstance(node, ast.BinOp):
        return _BINARY_LEVEL[node.op]
    if isinstance(node, ast.Neg):
        return UNARY
    return POSTFIX


def _wrap(node: ast.Node, minimum: int) -> str:
    text = unparse(node)
    return f"({text})" if _level(node) < minimum else text


def unparse(node: ast.Node) -> str:
    if isinstance(node, ast.Literal):
        value = node.value
        if value is None:
            return "null"
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return number_text(value)
        return string_text(value)
    if isinstance(node, ast.Duration):
        return f"{number_text(node.amount)}{node.unit}"
    if isinstance(node, ast.ListLit):
        return "[" + ", ".join(unparse(item) for item in node.items) + "]"
    if isinstance(node, ast.Name):
        return node.dotted
    if isinstance(node, ast.Window):
        args = [unparse(node.length)] + ([unparse(node.shift)] if node.shift is not None else [])
        return f"{node.source}.{node.metric}({', '.join(args)})"
    if isinstance(node, ast.Call):
        return f"{node.func}({', '.join(unparse(arg) for arg in node.args)})"
    if isinstance(node, ast.Neg):
        return "-" + _wrap(node.operand, UNARY)
    if isinstance(node, ast.Not):
        return "not " + _wrap(node.operand, NOT)
    if isinstance(node, ast.BoolOp):
        level = _level(node)
        return f"{_wrap(node.left, level)} {node.op} {_wrap(node.right, level + 1)}"
    if isinstance(node, ast.BinOp):
        level = _level(node)
        return f"{_wrap(node.left, level)} {node.op} {_wrap(node.right, level + 1)}"
    if isinstance(node, ast.Compare):
        return f"{_wrap(node.left, SUM)} {node.op} {_wrap(node.right, SUM)}"
    if isinstance(node, ast.Cond):
        return f"if {_wrap(node.test, OR)} then {_wrap(node.then, OR)} else {unparse(node.else_)}"
    raise TypeError(f"cannot print {type(node).__name__}")  # pragma: no cover
