"""Text -> AST: the lark LALR grammar, then a Transformer that builds our nodes with spans.

Every failure becomes a :class:`Diagnostic` at the offending character; no lark
exception or RecursionError ever reaches the caller.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import Any

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)

from crmcore.rules import ast
from crmcore.rules.diagnostics import Code, Collector, Origin, RuleError
from crmcore.rules.schema import WINDOWS

MAX_LENGTH = 10_000  # characters in one expression
MAX_DEPTH = 100  # nesting of the parsed tree (brackets, operators, calls)
MAX_INT = 2**63 - 1  # what SQL's bigint holds
MAX_SECONDS = 1e12  # about 31,000 years: any longer duration is a mistake

_SIMPLE_LITERAL = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?|true|false)\s*")

KEYWORDS = frozenset({"if", "then", "else", "and", "or", "not", "in", "matches", "true", "false", "null"})

_READABLE = {
    "NAME": "a name",
    "NUMBER": "a number",
    "DURATION": "a duration",
    "STRING": "a string",
    "COMPARE_OP": "a comparison",
    "ADD_OP": "'+' or '-'",
    "MUL_OP": "'*', '/' or '%'",
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "COMMA": "','",
    "DOT": "'.'",
    "MINUS": "'-'",
    "$END": "the end of the expression",
}


@cache
def _lark() -> Lark:
    grammar = resources.files("crmcore.rules").joinpath("grammar.lark").read_text()
    return Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=True, cache=True)


class ParseProblem(Exception):
    """Raised inside the transformer; converted to a diagnostic by :func:`parse`."""

    def __init__(self, code: str, message: str, index: int):
        super().__init__(message)
        self.code, self.message, self.index = code, message, index


WINDOW_SOURCES = frozenset(source for source, _ in WINDOWS)


def _number(text: str, at: int) -> int | float:
    """A numeric literal, refused when SQL and Python could not both hold it exactly enough."""
    if "." in text:
        value = float(text)
        if value > 1e300:
            raise ParseProblem(Code.BAD_STRING, f"number '{text[:20]}' is too large", at)
        return value
    if len(text.lstrip("0")) > 19 or int(text) > MAX_INT:  # leading zeros are harmless
        raise ParseProblem(Code.BAD_STRING, f"number '{text[:20]}' is too large (integers go up to {MAX_INT})", at)
    return int(text)


def _span(meta: Any) -> ast.Span:
    return ast.Span(meta.start_pos, meta.end_pos)


def _tok_span(tok: Token) -> ast.Span:
    return ast.Span(tok.start_pos or 0, tok.end_pos or 0)


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "'": "'", "\\": "\\"}


def unescape(body: str) -> str:
    """Decode a string literal's body; an unknown escape (``\\d`` in a regex) stays as written."""
    if "\\" not in body:
        return body
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            out.append(_ESCAPES.get(nxt, "\\" + nxt))
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


@v_args(meta=True)
class _Builder(Transformer[Token, ast.Node]):
    def number(self, meta: Any, children: list[Token]) -> ast.Node:
        return ast.Literal(_number(str(children[0]), meta.start_pos), span=_span(meta))

    def duration(self, meta: Any, children: list[Token]) -> ast.Node:
        text = str(children[0])
        node = ast.Duration(_number(text[:-1], meta.start_pos), text[-1], span=_span(meta))
        if node.seconds > MAX_SECONDS:
            raise ParseProblem(Code.BAD_STRING, f"duration '{text}' is too long", meta.start_pos)
        return node

    def string(self, meta: Any, children: list[Token]) -> ast.Node:
        return ast.Literal(unescape(str(children[0])[1:-1]), span=_span(meta))

    def true(self, meta: Any, children: list[Any]) -> ast.Node:
        return ast.Literal(True, span=_span(meta))

    def false(self, meta: Any, children: list[Any]) -> ast.Node:
        return ast.Literal(False, span=_span(meta))

    def null(self, meta: Any, children: list[Any]) -> ast.Node:
        return ast.Literal(None, span=_span(meta))

    def list_lit(self, meta: Any, children: list[ast.Node | None]) -> ast.Node:
        return ast.ListLit(tuple(c for c in children if c is not None), span=_span(meta))

    def name(self, meta: Any, children: list[Token]) -> ast.Node:
        name = str(children[0])
        if name in KEYWORDS:
            hint = " (an if-expression inside another expression needs brackets)" if name == "if" else ""
            raise ParseProblem(Code.SYNTAX, f"'{name}' is a keyword, not a value here{hint}", meta.start_pos)
        return ast.Name((name,), span=_span(meta))

    def attr(self, meta: Any, children: list[Any]) -> ast.Node:
        target, field = children
        if not isinstance(target, ast.Name):
            raise ParseProblem(Code.SYNTAX, f"'.{field}' can only follow a name such as client or ib", field.start_pos)
        return ast.Name((*target.parts, str(field)), span=_span(meta))

    def call(self, meta: Any, children: list[Any]) -> ast.Node:
        callee, *raw_args = children
        args = tuple(a for a in raw_args if a is not None)
        if isinstance(callee, ast.Name) and len(callee.parts) == 1:
            return ast.Call(callee.parts[0], args, span=_span(meta))
        if isinstance(callee, ast.Name) and len(callee.parts) == 2 and callee.parts[0] in WINDOW_SOURCES:
            source, metric = callee.parts
            if not args or not all(isinstance(a, ast.Duration) for a in args) or len(args) > 2:
                raise ParseProblem(
                    Code.BAD_DURATION,
                    f"{source}.{metric}(...) takes a window length and an optional shift, both durations such as 30d",
                    (args[0].span.start if args else callee.span.end),
                )
            length = args[0]
            shift = args[1] if len(args) == 2 else None
            assert isinstance(length, ast.Duration) and (shift is None or isinstance(shift, ast.Duration))
            return ast.Window(source, metric, length, shift, span=_span(meta))
        raise ParseProblem(Code.SYNTAX, "only functions and activity windows can be called", callee.span.start)

    def neg(self, meta: Any, children: list[ast.Node]) -> ast.Node:
        return ast.Neg(children[0], span=_span(meta))

    def not_(self, meta: Any, children: list[ast.Node]) -> ast.Node:
        return ast.Not(children[0], span=_span(meta))

    def binop(self, meta: Any, children: list[Any]) -> ast.Node:
        left, op, right = children
        return ast.BinOp(str(op), left, right, span=_span(meta))

    def compare(self, meta: Any, children: list[Any]) -> ast.Node:
        left, op, right = children
        return ast.Compare(str(op), left, right, span=_span(meta))

    def in_(self, meta: Any, children: list[ast.Node]) -> ast.Node:
        return ast.Compare("in", children[0], children[1], span=_span(meta))

    def not_in(self, meta: Any, children: list[ast.Node]) -> ast.Node:
        return ast.Compare("not in", children[0], children[1], span=_span(meta))

    def matches(self, meta: Any, children: list[ast.Node]) -> ast.Node:
        return ast.Compare("matches", children[0], children[1], span=_span(meta))

    def and_(self, meta: Any, children: list[ast.Node]) -> ast.Node:
        return ast.BoolOp("and", children[0], children[1], span=_span(meta))

    def or_(self, meta: Any, children: list[ast.Node]) -> ast.Node:
        return ast.BoolOp("or", children[0], children[1], span=_span(meta))

    def cond(self, meta: Any, children: list[ast.Node]) -> ast.Node:
        return ast.Cond(children[0], children[1], children[2], span=_span(meta))


def string_end(text: str, start: int) -> int:
    """Where the string literal whose quote is ``text[start]`` ends: at its closing quote,
    else at the end of its line or of the text (a string does not span lines)."""
    quote, i, end = text[start], start + 1, len(text)
    while i < end and text[i] not in (quote, "\n"):
        i += 2 if text[i] == "\\" else 1
    return i


def bracket_depth(text: str, *, opening: str = "([", closing: str = ")]", comments: bool = False) -> tuple[int, int]:
    """Deepest bracket nesting outside string literals (and ``#`` comments, with
    ``comments``), and where it is reached: checked before parsing, so that absurd nesting
    is a diagnostic, never a recursion error."""
    level = best = where = 0
    i, end = 0, len(text)
    while i < end:
        ch = text[i]
        if ch in "\"'":
            i = string_end(text, i)
        elif comments and ch == "#":
            while i < end and text[i] != "\n":
                i += 1
        elif ch in opening:
            level += 1
            if level > best:
                best, where = level, i
        elif ch in closing:
            level -= 1
        i += 1
    return best, where


def _expected_text(names: set[str]) -> str:
    """Readable names first (a name, a number, ...), then keywords; at most six."""
    readable = sorted(_READABLE[n] for n in names if n in _READABLE and n != "$END")
    keywords = sorted(repr(n.lower()) for n in names if n not in _READABLE)
    shown = (readable + keywords)[:6]
    if "$END" in names:
        shown.append(_READABLE["$END"])
    return ", ".join(shown) if shown else "something else"


def _describe_unexpected(err: UnexpectedInput, text: str) -> tuple[str, int]:
    index = getattr(err, "pos_in_stream", None) or 0
    if isinstance(err, UnexpectedCharacters):
        at = err.pos_in_stream or 0
        ch = text[at] if at < len(text) else ""
        if ch == "=":
            return "'=' is not an operator: use '==' to compare", at
        if ch in "\"'":
            return "unterminated string literal", at
        if ch in ("&", "|"):
            return f"'{ch}' is not an operator: use 'and' / 'or'", at
        if ch == "!":
            return "'!' is not an operator: use 'not' or '!='", at
        if ch.isdigit():
            word = re.match(r"[\w.]*", text[at:])
            shown = word.group(0) if word else ch
            return f"'{shown}' is neither a number nor a duration (durations: 90s, 15m, 24h, 30d, 2w)", at
        return f"unexpected character {ch!r}", at
    if isinstance(err, UnexpectedEOF):
        return "the expression ends too early", len(text)
    if isinstance(err, UnexpectedToken):
        tok = err.token
        index = tok.start_pos if tok.start_pos is not None else len(text)
        expected = _expected_text(err.expected)
        if tok.type == "$END":
            return f"the expression ends too early; expected {expected}", len(text)
        shown = str(tok)
        before = re.search(r"\bif\s*$", text[:index])
        if before:
            return "an if-expression inside another expression needs brackets: (if a then b else c)", before.start()
        if tok.type in {"COMPARE_OP", "IN", "MATCHES", "NOT"} and "AND" in err.expected:
            return f"comparisons cannot be chained: '{shown}' after a comparison (use 'and')", index
        return f"unexpected {shown!r}; expected {expected}", index
    return str(err).splitlines()[0], index


def parse(text: str, origin: Origin | None = None) -> ast.Node:
    """Parse one expression; raise :class:`RuleError` with the position of the first problem."""
    origin = origin or Origin.standalone(text)
    simple = _SIMPLE_LITERAL.fullmatch(text)
    if simple:  # `points: 20`, `when: true`: a third of a rule file, no parser needed
        word = simple.group(1)
        span = ast.Span(simple.start(1), simple.end(1))
        if word in ("true", "false"):
            return ast.Literal(word == "true", span=span)
        if len(word) <= 15:
            return ast.Literal(float(word) if "." in word else int(word), span=span)
    problems = Collector()
    try:
        return _parse(text, origin, problems)
    except RuleError:
        raise
    except RecursionError:
        problems.error_at(Code.TOO_COMPLEX, f"expression nested too deeply (limit {MAX_DEPTH})", origin, 0)
    problems.raise_if_errors()
    raise AssertionError("unreachable")  # pragma: no cover


def _parse(text: str, origin: Origin, problems: Collector) -> ast.Node:
    if not text.strip():
        problems.error_at(Code.SYNTAX, "empty expression", origin, 0)
        problems.raise_if_errors()
    if len(text) > MAX_LENGTH:
        problems.error_at(Code.TOO_COMPLEX, f"expression longer than {MAX_LENGTH} characters", origin, MAX_LENGTH)
        problems.raise_if_errors()
    deepest, where = bracket_depth(text)
    if deepest > MAX_DEPTH:
        problems.error_at(Code.TOO_COMPLEX, f"brackets nested deeper than {MAX_DEPTH}", origin, where)
        problems.raise_if_errors()
    try:
        tree = _lark().parse(text)
    except UnexpectedInput as err:
        message, index = _describe_unexpected(err, text)
        problems.error_at(Code.SYNTAX, message, origin, index)
        problems.raise_if_errors()
    if _tree_depth(tree) > MAX_DEPTH:
        problems.error_at(Code.TOO_COMPLEX, f"expression nested deeper than {MAX_DEPTH}", origin, 0)
        problems.raise_if_errors()
    try:
        node = _Builder().transform(tree)
    except VisitError as err:
        inner = err.orig_exc
        if isinstance(inner, ParseProblem):
            problems.error_at(inner.code, inner.message, origin, inner.index)
            problems.raise_if_errors()
        raise
    if isinstance(node, Token):  # a lone terminal (cannot happen with this grammar's aliases)
        problems.error_at(Code.SYNTAX, "not an expression", origin, 0)
        problems.raise_if_errors()
    return node


def _tree_depth(tree: Tree[Token]) -> int:
    best = 0
    stack: list[tuple[Any, int]] = [(tree, 1)]
    while stack:
        current, level = stack.pop()
        best = max(best, level)
        if level > MAX_DEPTH:
            return level
        if isinstance(current, Tree):
            stack.extend((child, level + 1) for child in current.children)
    return best
