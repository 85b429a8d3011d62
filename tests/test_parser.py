"""The grammar: precedence, literals, and a position for every syntax error."""

from __future__ import annotations

import pytest

from crmcore.rules import ast
from crmcore.rules.diagnostics import Code, RuleError
from crmcore.rules.parser import MAX_DEPTH, MAX_LENGTH, parse
from crmcore.rules.unparse import unparse


def shape(text: str) -> str:
    """The parse as a fully bracketed string, to read precedence at a glance."""

    def show(node: ast.Node) -> str:
        if isinstance(node, ast.BinOp | ast.Compare | ast.BoolOp):
            return f"({show(node.left)} {node.op} {show(node.right)})"
        if isinstance(node, ast.Not):
            return f"(not {show(node.operand)})"
        if isinstance(node, ast.Neg):
            return f"(-{show(node.operand)})"
        if isinstance(node, ast.Cond):
            return f"(if {show(node.test)} then {show(node.then)} else {show(node.else_)})"
        return unparse(node)

    return show(parse(text))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a or b and c", "(a or (b and c))"),
        ("not a and b", "((not a) and b)"),
        ("not a == b", "(not (a == b))"),
        ("a + b * c", "(a + (b * c))"),
        ("a - b - c", "((a - b) - c)"),
        ("-a * b", "((-a) * b)"),
        ("a * -b", "(a * (-b))"),
        ("a + b < c * d", "((a + b) < (c * d))"),
        ("if a then b else c or d", "(if a then b else (c or d))"),
        ("x in L and y not in M", "((x in L) and (y not in M))"),
        ("x matches 'a' or false", "((x matches \"a\") or false)"),
        ("a % b / c", "((a % b) / c)"),
    ],
)
def test_precedence_follows_the_spec(text: str, expected: str) -> None:
    assert shape(text) == expected


def test_literals_keep_their_python_values() -> None:
    assert parse("42") == ast.Literal(42)
    assert parse("3.5") == ast.Literal(3.5)
    assert parse('"DE"') == ast.Literal("DE")
    assert parse("'DE'") == ast.Literal("DE")
    assert parse("true") == ast.Literal(True)
    assert parse("null") == ast.Literal(None)
    assert parse('["DE", "AT"]') == ast.ListLit((ast.Literal("DE"), ast.Literal("AT")))


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("15m", 900), ("24h", 86400), ("30d", 2592000), ("2w", 1209600), ("1.5h", 5400)])
def test_durations_are_seconds(text: str, seconds: float) -> None:
    node = parse(text)
    assert isinstance(node, ast.Duration)
    assert node.seconds == seconds


def test_string_escapes_decode_and_unknown_ones_stay() -> None:
    assert parse(r'"a\"b\\c\n"') == ast.Literal('a"b\\c\n')
    assert parse(r"'\d+\.com'") == ast.Literal(r"\d+\.com")


def test_dotted_names_and_windows() -> None:
    assert parse("client.country") == ast.Name(("client", "country"))
    node = parse("deposits.count(30d, 30d)")
    assert isinstance(node, ast.Window)
    assert (node.source, node.metric, node.length.seconds, node.shift and node.shift.seconds) == ("deposits", "count", 2592000, 2592000)


def test_spans_cover_the_source_text() -> None:
    text = "client.balance > 100 and ib != null"
    node = parse(text)
    assert isinstance(node, ast.BoolOp)
    assert text[node.left.span.start : node.left.span.end] == "client.balance > 100"
    assert text[node.right.span.start : node.right.span.end] == "ib != null"


def error_of(text: str) -> tuple[str, int, str]:
    with pytest.raises(RuleError) as info:
        parse(text)
    d = info.value.diagnostics[0]
    return d.code, d.column, d.message


@pytest.mark.parametrize(
    ("text", "column", "fragment"),
    [
        ("client.country = 'DE'", 16, "use '=='"),
        ("a < b < c", 7, "cannot be chained"),
        ("a and", 6, "ends too early"),
        ("(a or b", 8, "ends too early"),
        ("'unterminated", 1, "unterminated string"),
        ("a && b", 3, "use 'and'"),
        ("30days > 1", 1, "neither a number nor a duration"),
        ("1 + if true then 1 else 2", 5, "needs brackets"),
        ("99999999999999999999 > 1", 1, "too large"),
        ("lower(x).y", 10, "can only follow a name"),
        ("deposits.count(30)", 16, "durations such as 30d"),
        ("1 +", 4, "ends too early"),
        ("", 1, "empty expression"),
    ],
)
def test_syntax_errors_point_at_the_offending_character(text: str, column: int, fragment: str) -> None:
    code, col, message = error_of(text)
    assert code in (Code.SYNTAX, Code.BAD_DURATION, Code.BAD_STRING)
    assert col == column
    assert fragment in message


def test_too_long_and_too_deep_are_refused_with_a_code() -> None:
    assert error_of("a or " * (MAX_LENGTH // 5 + 1) + "a")[0] == Code.TOO_COMPLEX
    assert error_of("(" * (MAX_DEPTH + 1) + "a" + ")" * (MAX_DEPTH + 1))[0] == Code.TOO_COMPLEX
    assert error_of("not " * (MAX_DEPTH + 5) + "a")[0] == Code.TOO_COMPLEX
    assert error_of("- " * (MAX_DEPTH + 5) + "1")[0] == Code.TOO_COMPLEX


def test_diagnostic_renders_line_and_caret() -> None:
    with pytest.raises(RuleError) as info:
        parse("a ! b")
    assert info.value.render() == "<expr>:1:3: error: '!' is not an operator: use 'not' or '!=' [E100]\n    a ! b\n      ^"
