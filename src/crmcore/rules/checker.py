"""Type checking: an untyped AST and an :class:`Env` in, a typed AST (or diagnostics) out.

The checker collects every error of an expression before failing. A node that
failed gets the ``error`` type, which agrees with everything, so one mistake is
reported once and not again by every operator above it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from re import _constants as sre_constants  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

from crmcore.rules import ast
from crmcore.rules.diagnostics import Code, Collector, Origin, RuleError
from crmcore.rules.schema import (
    AGENT_FIELDS,
    IB_FIELDS,
    ROOTS,
    TRADING_FIELDS,
    WINDOWS,
    Env,
)
from crmcore.rules.types import (
    BOOL,
    DURATION,
    INT,
    NULL,
    NUMBER,
    RECORD,
    STRING,
    TIMESTAMP,
    Type,
    comparable,
    join,
    list_of,
)

ERROR = Type("error", True)

MAX_REGEX_LENGTH = 500


class CheckProblem(Exception):
    def __init__(self, code: str, message: str, node: ast.Node, index: int | None = None):
        super().__init__(message)
        self.code, self.message, self.node = code, message, node
        self.index = node.span.start if index is None else index


def _is_error(*types: Type) -> bool:
    return any(t.base == "error" for t in types)


def _nullable(*types: Type) -> bool:
    return any(t.nullable for t in types)


def _is_bool(t: Type) -> bool:
    return t.base in ("bool", "error", "null")


def _suggest(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.7)
    return f"; did you mean '{close[0]}'?" if close else ""


# --- functions: name -> (arity text, typing rule over argument types) -------------------------

def _numeric_result(args: Sequence[Type]) -> Type:
    base = INT if all(a.base == "int" for a in args) else NUMBER
    return base.maybe(_nullable(*args))


def _fn_since(args: Sequence[Type]) -> Type:
    _expect(args[0], ("timestamp",), "a timestamp")
    return NUMBER.maybe(args[0].nullable)


def _fn_days_between(args: Sequence[Type]) -> Type:
    for a in args:
        _expect(a, ("timestamp",), "timestamps")
    return NUMBER.maybe(_nullable(*args))


def _fn_case(args: Sequence[Type]) -> Type:
    _expect(args[0], ("string",), "a string")
    return STRING.maybe(args[0].nullable)


def _fn_len(args: Sequence[Type]) -> Type:
    _expect(args[0], ("string", "list"), "a string or a list")
    return INT.maybe(args[0].nullable)


def _fn_abs(args: Sequence[Type]) -> Type:
    _expect(args[0], ("int", "number", "duration"), "a number or a duration")
    return args[0]


def _fn_round(args: Sequence[Type]) -> Type:
    _expect(args[0], ("int", "number"), "a number")
    return INT.maybe(args[0].nullable)


def _fn_minmax(args: Sequence[Type]) -> Type:
    a, b = args
    if not (a.ordered and b.ordered and comparable(a, b)):
        raise _ArgError(f"cannot compare ({a}, {b})")
    result = join(a, b)
    assert result is not None
    return result


def _fn_strtest(args: Sequence[Type]) -> Type:
    for a in args:
        _expect(a, ("string",), "strings")
    return BOOL.maybe(_nullable(*args))


def _fn_coalesce(args: Sequence[Type]) -> Type:
    result = args[0]
    for a in args[1:]:
        joined = join(result.null(), a)
        if joined is None:
            raise _ArgError(f"arguments must share a type, got {', '.join(str(x) for x in args)}")
        result = joined
    nullable = all(a.nullable for a in args)
    return Type(result.base, nullable, result.elem) if result.base != "null" else NULL


class _ArgError(Exception):
    pass


def _expect(t: Type, bases: tuple[str, ...], what: str) -> None:
    if t.base not in bases and t.base not in ("error", "null"):
        raise _ArgError(f"expects {what}, got {t}")


# name -> (min args, max args or None for any, rule)
FUNCTIONS: dict[str, tuple[int, int | None, Callable[[Sequence[Type]], Type]]] = {
    "days_since": (1, 1, _fn_since),
    "hours_since": (1, 1, _fn_since),
    "days_between": (2, 2, _fn_days_between),
    "lower": (1, 1, _fn_case),
    "upper": (1, 1, _fn_case),
    "len": (1, 1, _fn_len),
    "coalesce": (2, None, _fn_coalesce),
    "abs": (1, 1, _fn_abs),
    "min": (2, 2, _fn_minmax),
    "max": (2, 2, _fn_minmax),
    "round": (1, 1, _fn_round),
    "startswith": (2, 2, _fn_strtest),
    "endswith": (2, 2, _fn_strtest),
    "contains": (2, 2, _fn_strtest),
}

# arithmetic: (op, left base, right base) -> result base
_ARITH: dict[tuple[str, str, str], str] = {}
for _op in "+-*":
    _ARITH[(_op, "int", "int")] = "int"
for _op in "+-*/":
    for _l, _r in (("int", "number"), ("number", "int"), ("number", "number")):
        _ARITH[(_op, _l, _r)] = "number"
_ARITH[("/", "int", "int")] = "number"
_ARITH[("%", "int", "int")] = "int"
_ARITH.update({
    ("-", "timestamp", "timestamp"): "duration",
    ("+", "timestamp", "duration"): "timestamp",
    ("-", "timestamp", "duration"): "timestamp",
    ("+", "duration", "timestamp"): "timestamp",
    ("+", "duration", "duration"): "duration",
    ("-", "duration", "duration"): "duration",
    ("*", "duration", "int"): "duration",
    ("*", "duration", "number"): "duration",
    ("*", "int", "duration"): "duration",
    ("*", "number", "duration"): "duration",
    ("/", "duration", "int"): "duration",
    ("/", "duration", "number"): "duration",
    ("/", "duration", "duration"): "number",
})


class Checker:
    """Types one expression against an :class:`Env`, collecting diagnostics."""

    def __init__(self, env: Env, origin: Origin, problems: Collector):
        self.env = env
        self.origin = origin
        self.problems = problems

    def check(self, node: ast.Node) -> ast.Node:
        method: Callable[[Any], ast.Node] = getattr(self, f"visit_{type(node).__name__}")
        try:
            return method(node)
        except CheckProblem as problem:
            self.problems.error_at(problem.code, problem.message, self.origin, problem.index)
            return node.with_type(ERROR)

    @staticmethod
    def _typed_null(node: ast.Node, t: Type) -> ast.Node:
        """A literal ``null`` standing for a missing value of type ``t`` (``null + 1``): typed
        ``t?``, so every back end computes with it as with a null field of that type."""
        return replace(node, type=t.null()) if _is_null_literal(node) else node

    def _operator_index(self, node: ast.Node, left: ast.Node) -> int:
        """Where a binary operator's symbol starts: the first non-blank after its left side."""
        text = self.origin.text
        index = left.span.end
        while index < node.span.end and index < len(text) and text[index].isspace():
            index += 1
        return index

    # leaves ------------------------------------------------------------------------------------

    def visit_Literal(self, node: ast.Literal) -> ast.Node:
        value = node.value
        if value is None:
            t = NULL
        elif isinstance(value, bool):
            t = BOOL
        elif isinstance(value, int):
            t = INT
        elif isinstance(value, float):
            t = NUMBER
        else:
            t = STRING
        return node.with_type(t)

    def visit_Duration(self, node: ast.Duration) -> ast.Node:
        return node.with_type(DURATION)

    def visit_ListLit(self, node: ast.ListLit) -> ast.Node:
        items = tuple(self.check(item) for item in node.items)
        elem: Type = NULL
        for item in items:
            assert item.type is not None
            if item.type.base == "null" or item.type.nullable:
                raise CheckProblem(Code.TYPE_MISMATCH, "a list cannot hold null (this item may be null)", item)
            if item.type.base == "list":
                raise CheckProblem(Code.TYPE_MISMATCH, "lists cannot be nested", item)
            if _is_error(item.type):
                continue
            joined = join(elem, item.type.nonnull()) if elem.base != "null" else item.type.nonnull()
            if joined is None:
                raise CheckProblem(Code.TYPE_MISMATCH, f"list items must share a type: {elem} and {item.type}", item)
            elem = joined
        return replace(node, items=items, type=list_of(elem.nonnull() if elem.base != "null" else NULL))

    def visit_Name(self, node: ast.Name) -> ast.Node:
        return node.with_type(self._name_type(node))

    def _name_type(self, node: ast.Name) -> Type:
        parts = node.parts
        for part in parts:
            if part.startswith("_"):
                raise CheckProblem(Code.FORBIDDEN, f"names starting with '_' are not allowed: '{part}'", node)
        root = parts[0]
        if len(parts) == 1:
            if root == "now":
                return TIMESTAMP
            if root in self.env.lists:
                return self.env.lists[root]
            if root == "ib":
                return RECORD.null()
            if root in ROOTS:
                raise CheckProblem(Code.TYPE_MISMATCH, f"'{root}' is a record: name one of its fields, e.g. {root}.<field>", node)
            if any(source == root for source, _ in WINDOWS):
                raise CheckProblem(Code.UNKNOWN_NAME, f"'{root}' is an activity window: use e.g. {root}.count(30d)", node)
            raise CheckProblem(Code.UNKNOWN_NAME, f"unknown name '{root}'{_suggest(root, [*self.env.lists, *ROOTS])}", node)
        if len(parts) > 2:
            raise CheckProblem(Code.UNKNOWN_NAME, f"unknown name '{node.dotted}': fields have one level (root.field)", node)
        if root == "now" or root in self.env.lists:
            raise CheckProblem(Code.UNKNOWN_NAME, f"'{root}' has no fields: '{node.dotted}' is not a name", node)
        field = parts[1]
        fields = self._root_fields(node, root)
        if field not in fields:
            if (root, field) in WINDOWS:
                raise CheckProblem(Code.UNKNOWN_NAME, f"'{node.dotted}' is an activity window: call it with a length, e.g. {node.dotted}(30d)", node)
            raise CheckProblem(Code.UNKNOWN_NAME, f"unknown field '{node.dotted}'{_suggest(field, fields)}", node)
        return fields[field]

    def _root_fields(self, node: ast.Name, root: str) -> dict[str, Type]:
        env = self.env
        if root == "client":
            return dict(env.client)
        if root == "ib":
            return {name: t.null() for name, t in IB_FIELDS.items()}
        if root == "trading":
            return dict(TRADING_FIELDS)
        if root == "agent":
            if not env.agent:
                raise CheckProblem(Code.FORBIDDEN, "'agent' is only available inside a routing rule's require", node)
            return dict(AGENT_FIELDS)
        if root == "event":
            if env.event is None:
                raise CheckProblem(Code.FORBIDDEN, "'event' is only available in triggers with 'on:'", node)
            return dict(env.event)
        if root == "score":
            return {name: NUMBER for name in env.scores}
        if root == "band":
            return {name: STRING for name in env.scores}
        if any(source == root for source, _ in WINDOWS):
            return {}
        raise CheckProblem(Code.UNKNOWN_NAME, f"unknown name '{root}'{_suggest(root, [*ROOTS, *env.lists])}", node)

    def visit_Window(self, node: ast.Window) -> ast.Node:
        key = (node.source, node.metric)
        if key not in WINDOWS:
            known = sorted(f"{s}.{m}" for s, m in WINDOWS)
            raise CheckProblem(Code.UNKNOWN_NAME, f"unknown activity window '{node.source}.{node.metric}'{_suggest(f'{node.source}.{node.metric}', known)}", node)
        if node.length.seconds <= 0:
            raise CheckProblem(Code.BAD_DURATION, "a window's length must be more than zero", node.length)
        return node.with_type(WINDOWS[key])

    # operators ---------------------------------------------------------------------------------

    def visit_Neg(self, node: ast.Neg) -> ast.Node:
        operand = self.check(node.operand)
        t = operand.type
        assert t is not None
        if not _is_error(t) and t.base not in ("int", "number", "duration", "null"):
            raise CheckProblem(Code.TYPE_MISMATCH, f"no matching overload for unary '-' applied to ({t})", node)
        return replace(node, operand=operand, type=t)  # -null is null (SPEC 3)

    def visit_Not(self, node: ast.Not) -> ast.Node:
        operand = self.check(node.operand)
        assert operand.type is not None
        if not _is_bool(operand.type):
            raise CheckProblem(Code.TYPE_MISMATCH, f"'not' needs a bool, got {operand.type}", node.operand)
        return replace(node, operand=operand, type=BOOL)

    def visit_BoolOp(self, node: ast.BoolOp) -> ast.Node:
        left, right = self.check(node.left), self.check(node.right)
        for side in (left, right):
            assert side.type is not None
            if not _is_bool(side.type):
                raise CheckProblem(Code.TYPE_MISMATCH, f"'{node.op}' needs bools, got {side.type}", side)
        return replace(node, left=left, right=right, type=BOOL)

    def visit_BinOp(self, node: ast.BinOp) -> ast.Node:
        left, right = self.check(node.left), self.check(node.right)
        lt, rt = left.type, right.type
        assert lt is not None and rt is not None
        if _is_error(lt, rt):
            return replace(node, left=left, right=right, type=ERROR)
        if lt.base == "null" or rt.base == "null":  # SPEC 3: arithmetic with null is null
            null_left = lt.base == "null"
            known = rt if null_left else lt
            # the literal stands for a value of the type the other side combines with
            match = next((
                (first if null_left else second, combined) for (op, first, second), combined in _ARITH.items()
                if op == node.op and (second if null_left else first) == known.base
            ), None)
            if match is None or not _is_null_literal(left if null_left else right) or known.base == "null":
                raise CheckProblem(Code.TYPE_MISMATCH, f"no matching overload for '{node.op}' applied to ({lt}, {rt})", node, self._operator_index(node, left))
            stands_for, combined = match
            if null_left:
                left = self._typed_null(left, Type(stands_for))
            else:
                right = self._typed_null(right, Type(stands_for))
            return replace(node, left=left, right=right, type=Type(combined).null())
        result = _ARITH.get((node.op, lt.base, rt.base))
        if result is None:
            hint = " ('%' takes integers)" if node.op == "%" else ""
            raise CheckProblem(Code.TYPE_MISMATCH, f"no matching overload for '{node.op}' applied to ({lt}, {rt}){hint}", node, self._operator_index(node, left))
        nullable = _nullable(lt, rt) or node.op in ("/", "%")  # x / 0 and x % 0 are null
        return replace(node, left=left, right=right, type=Type(result).maybe(nullable))

    def visit_Compare(self, node: ast.Compare) -> ast.Node:
        left, right = self.check(node.left), self.check(node.right)
        lt, rt = left.type, right.type
        assert lt is not None and rt is not None
        typed = replace(node, left=left, right=right, type=BOOL)
        if _is_error(lt, rt):
            return typed
        op = node.op
        at = self._operator_index(node, left)
        if op in ("==", "!="):
            if "record" in (lt.base, rt.base) and "null" not in (lt.base, rt.base):
                raise CheckProblem(Code.TYPE_MISMATCH, f"a record can only be compared with null, got ({lt}, {rt})", node, at)
            if not comparable(lt, rt):
                raise CheckProblem(Code.TYPE_MISMATCH, f"no matching overload for '{op}' applied to ({lt}, {rt})", node, at)
            self._check_band_literal(left, right)
            self._check_band_literal(right, left)
        elif op in ("<", "<=", ">", ">="):
            if (lt.base == "null") != (rt.base == "null"):  # SPEC 3: a comparison with null is false
                known = rt if lt.base == "null" else lt
                if not known.ordered or not _is_null_literal(left if lt.base == "null" else right):
                    raise CheckProblem(Code.TYPE_MISMATCH, f"no matching overload for '{op}' applied to ({lt}, {rt})", node, at)
                return replace(typed, left=self._typed_null(left, known), right=self._typed_null(right, known))
            if not (lt.ordered and rt.ordered and comparable(lt, rt)):
                raise CheckProblem(Code.TYPE_MISMATCH, f"no matching overload for '{op}' applied to ({lt}, {rt})", node, at)
        elif op in ("in", "not in"):
            if rt.base != "list":
                raise CheckProblem(Code.TYPE_MISMATCH, f"'{op}' needs a list on the right, got {rt}", right)
            assert rt.elem is not None
            if _is_null_literal(left):  # null in [..] is false, null not in [..] too (SPEC 11)
                return replace(typed, left=self._typed_null(left, rt.elem)) if rt.elem.base != "null" else typed
            if lt.base in ("list", "record", "null") or not comparable(lt, rt.elem):
                raise CheckProblem(Code.TYPE_MISMATCH, f"no matching overload for '{op}' applied to ({lt}, {rt})", node, at)
            if isinstance(right, ast.ListLit):
                for item in right.items:
                    self._check_band_literal(left, item)
        elif op == "matches":
            if lt.base not in ("string", "null"):
                raise CheckProblem(Code.TYPE_MISMATCH, f"'matches' needs a string on the left, got {lt}", left)
            if not (isinstance(right, ast.Literal) and isinstance(right.value, str)):
                raise CheckProblem(Code.BAD_REGEX, "the pattern of 'matches' must be a string literal", right)
            self._check_regex(right)
        return typed

    def _check_band_literal(self, name: ast.Node, other: ast.Node) -> None:
        if not (isinstance(name, ast.Name) and name.parts[0] == "band" and len(name.parts) == 2):
            return
        if isinstance(other, ast.Literal) and isinstance(other.value, str):
            bands = self.env.bands.get(name.parts[1], ())
            if bands and other.value not in bands:
                raise CheckProblem(
                    Code.UNKNOWN_BAND,
                    f"score '{name.parts[1]}' has no band '{other.value}' (bands: {', '.join(bands)})",
                    other,
                )

    def _check_regex(self, literal: ast.Literal) -> None:
        pattern = literal.value
        assert isinstance(pattern, str)
        if len(pattern) > MAX_REGEX_LENGTH:
            raise CheckProblem(Code.BAD_REGEX, f"regex longer than {MAX_REGEX_LENGTH} characters", literal)
        try:
            re.compile(pattern, re.ASCII)
            parsed = sre_parse.parse(pattern)
        except (re.error, RecursionError, OverflowError, ValueError) as err:
            raise CheckProblem(Code.BAD_REGEX, f"invalid regex: {err}", literal) from None
        if _nested_repeat(parsed):
            raise CheckProblem(
                Code.BAD_REGEX,
                "regex repeats a group whose width varies (like (a+)+, (a|ab)+ or (a?){30}): "
                "it can take exponential time; repeat only fixed-width groups or character classes ([ab]+)",
                literal,
            )

    def visit_Cond(self, node: ast.Cond) -> ast.Node:
        test, then, else_ = self.check(node.test), self.check(node.then), self.check(node.else_)
        assert test.type is not None and then.type is not None and else_.type is not None
        if not _is_bool(test.type):
            raise CheckProblem(Code.NOT_BOOL, f"the condition of 'if' must be a bool, got {test.type}", node.test)
        if _is_error(then.type, else_.type):
            return replace(node, test=test, then=then, else_=else_, type=ERROR)
        result = join(then.type, else_.type)
        if result is None:
            raise CheckProblem(Code.TYPE_MISMATCH, f"'then' and 'else' have different types: {then.type} and {else_.type}", node)
        return replace(node, test=test, then=then, else_=else_, type=result)

    def visit_Call(self, node: ast.Call) -> ast.Node:
        if node.func not in FUNCTIONS:
            raise CheckProblem(Code.UNKNOWN_NAME, f"unknown function '{node.func}'{_suggest(node.func, FUNCTIONS)}", node)
        low, high, rule = FUNCTIONS[node.func]
        count = len(node.args)
        if count < low or (high is not None and count > high):
            wanted = str(low) if low == high else f"{low} or more" if high is None else f"{low} to {high}"
            raise CheckProblem(Code.ARITY, f"{node.func}() takes {wanted} argument{'s' if wanted != '1' else ''}, got {count}", node)
        args = tuple(self.check(arg) for arg in node.args)
        if node.func in ("min", "max"):  # min(null, x) is null (SPEC 11): the literal takes x's type
            known = [arg.type for arg in args if arg.type is not None and arg.type.base != "null"]
            if len(known) == 1:
                args = tuple(self._typed_null(arg, known[0]) for arg in args)
        types = [a.type for a in args]
        assert all(t is not None for t in types)
        if _is_error(*types):  # type: ignore[arg-type]
            return replace(node, args=args, type=ERROR)
        try:
            result = rule(types)  # type: ignore[arg-type]
        except _ArgError as err:
            raise CheckProblem(Code.TYPE_MISMATCH, f"{node.func}() {err}", node) from None
        return replace(node, args=args, type=result)  # f(null) is null (SPEC 11): type null


def _is_null_literal(node: ast.Node) -> bool:
    """A bare ``null``: it may stand for a missing value of any type (``null + 1``). Another
    expression of type null (``if c then null else null``) has no SQL type to go by."""
    return isinstance(node, ast.Literal) and node.value is None


def _nested_repeat(parsed: Any) -> bool:
    """Whether a regex can take exponential (or high-polynomial) time: a group repeated more
    than once whose width varies (``(a+)+``, ``(a|ab)+``, ``(a?){30}``, ``(\\w{1,9}\\s?){1,9}``).
    Deliberately strict: only fixed-width groups may be repeated."""
    for op, arg in parsed:
        if op in (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT, sre_constants.POSSESSIVE_REPEAT):
            _low, high, sub = arg
            if high > 1 and _variable_width(sub):
                return True
            if _nested_repeat(sub):
                return True
        elif any(_nested_repeat(child) for child in _children(op, arg)):
            return True
    return False


def _variable_width(parsed: Any) -> bool:
    for op, arg in parsed:
        if op in (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT, sre_constants.POSSESSIVE_REPEAT):
            if arg[0] != arg[1] or _variable_width(arg[2]):
                return True
        elif op == sre_constants.BRANCH or any(_variable_width(child) for child in _children(op, arg)):
            return True
    return False


def _children(op: Any, arg: Any) -> list[Any]:
    """The sub-patterns of a group, an alternation or an assertion."""
    if op == sre_constants.SUBPATTERN:
        return [arg[-1]]
    if op == sre_constants.BRANCH:
        return list(arg[1])
    if op in (sre_constants.ASSERT, sre_constants.ASSERT_NOT):
        return [arg[1]]
    return []


MAX_INT = 2**63 - 1


def _check_constants(node: ast.Node, origin: Origin, problems: Collector) -> None:
    """Constant arithmetic must stay in range on every back end (SQL's bigint, Python's timedelta)."""
    from crmcore.rules.interpreter import Scope, evaluate
    from crmcore.rules.optimizer import is_constant

    for sub in node.walk():
        if not isinstance(sub, ast.BinOp | ast.Neg | ast.Call) or not is_constant(sub):
            continue
        try:
            value = evaluate(sub, Scope())
        except (OverflowError, ValueError, ArithmeticError):
            value = None
            out_of_range = True
        else:
            out_of_range = isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT
        if out_of_range:
            problems.error_at(Code.BAD_STRING, "this constant arithmetic is out of range", origin, sub.span.start)
            return


def check(node: ast.Node, env: Env, origin: Origin, problems: Collector) -> ast.Node:
    """Type one expression; errors go to ``problems`` and the result then holds ``error`` types."""
    before = len(problems.diagnostics)
    try:
        typed = Checker(env, origin, problems).check(node)
    except RecursionError:
        problems.error_at(Code.TOO_COMPLEX, "expression nested too deeply", origin, node.span.start)
        return node.with_type(ERROR)
    if len(problems.diagnostics) == before:
        _check_constants(typed, origin, problems)
    return typed


def check_text(text: str, env: Env | None = None, origin: Origin | None = None) -> ast.Node:
    """Parse and type one expression; raise :class:`RuleError` with every problem found."""
    from crmcore.rules.parser import parse

    origin = origin or Origin.standalone(text)
    node = parse(text, origin)
    problems = Collector()
    typed = check(node, env or Env(), origin, problems)
    problems.raise_if_errors()
    return typed


def as_condition(node: ast.Node, origin: Origin, problems: Collector, what: str = "condition") -> None:
    """A ``when`` must be a bool."""
    assert node.type is not None
    if not _is_bool(node.type):
        problems.error_at(Code.NOT_BOOL, f"a {what} must be a bool, got {node.type}", origin, node.span.start)


def as_number(node: ast.Node, origin: Origin, problems: Collector, what: str = "points") -> None:
    assert node.type is not None
    if node.type.base not in ("int", "number", "error", "null"):
        problems.error_at(Code.NOT_NUMBER, f"{what} must be a number, got {node.type}", origin, node.span.start)


__all__ = ["ERROR", "FUNCTIONS", "Checker", "RuleError", "as_condition", "as_number", "check", "check_text"]
