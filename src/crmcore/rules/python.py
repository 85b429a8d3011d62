"""Typed AST -> Python source -> a function, at the speed of hand-written code.

Like a template engine, we generate the source of a whole function and
``compile()`` it once: every field an expression reads is fetched from the host's
record once, into a local, and normalised there (timestamps to stamps,
Decimals to floats); null checks are emitted only where the checker says a
value may be null. The generated code keeps a comment per expression naming
its origin, so a traceback points at the rule it came from.
"""

from __future__ import annotations

import re
from ast import literal_eval
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from operator import itemgetter
from typing import Any

from crmcore.rules import ast
from crmcore.rules.diagnostics import EvaluationError
from crmcore.rules.interpreter import missing_field
from crmcore.rules.schema import CLIENT_DEFAULTS
from crmcore.rules.types import Type
from crmcore.rules.values import (
    DAY,
    EPOCH,
    HOUR,
    ascii_lower,
    ascii_upper,
    infer_stage,
    mod,
    round_half_away,
    to_stamp,
)

_SIMPLE = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*|-?\d+(?:\.\d+)?(?:e[+-]?\d+)?|'[^'\\]*'|\"[^\"\\]*\"|None|True|False)$")


class _NowCache:
    """The last ``now`` converted: a batch usually shares one ``now`` object (a scan, a backtest).

    ``last`` holds one ``(value, stamp)`` pair, swapped atomically, so concurrent callers only
    ever miss, never mix values. The generated code reads it inline and calls only on a miss.
    """

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: tuple[Any, timedelta] = (object(), timedelta(0))  # matches no caller's `now`

    def __call__(self, value: Any) -> timedelta:
        if value is None:
            raise EvaluationError("the rules use 'now' (days_since, windows, ...) but the context has no 'now'")
        stamp = to_stamp(value)
        assert stamp is not None
        self.last = (value, stamp)
        return stamp


RUNTIME: dict[str, Any] = {
    "_now": None,  # a _NowCache per generated function (see build_function)
    "_EvaluationError": EvaluationError,
    "_missing": missing_field,
    "_to_stamp": to_stamp,
    "_datetime": datetime,
    "_timedelta": timedelta,
    "_EPOCH": EPOCH,
    "_DAY": DAY,
    "_HOUR": HOUR,
    "_Decimal": Decimal,
    "_infer_stage": infer_stage,
    "_lower": ascii_lower,
    "_upper": ascii_upper,
    "_mod": mod,
    "_round": round_half_away,
}

_ORDER_OPS = {"<", "<=", ">", ">="}


@dataclass
class Reads:
    """How the generated function reaches each root.

    ``roots`` maps a root name to the Python expression holding the host's record
    (``client``, ``s.client``...), and ``now`` to the context's ``now`` as given. Scores and bands may be locals of the same
    function (the fused evaluator) or looked up in a mapping.
    """

    roots: Mapping[str, str]
    score_locals: Mapping[str, str] = field(default_factory=dict)
    band_locals: Mapping[str, str] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=lambda: CLIENT_DEFAULTS)


class CodeGen:
    """Generates the body of one Python function from any number of typed expressions."""

    def __init__(self, reads: Reads, lists: Mapping[str, tuple[Any, ...]]):
        self.reads = reads
        self.lists = lists
        self.prologue: list[str] = []
        self.client_fields: list[tuple[str, str]] = []  # (local, field) read from the client record
        self.client_stamps: list[str] = []  # client timestamp locals, converted in one block
        self.names: dict[tuple[str, ...], str] = {}  # dotted name -> local variable
        self.constants: dict[str, Any] = {}
        self._const_ids: dict[Any, str] = {}
        self._temps = 0
        self.uses_now = False
        self.also_reads: set[str] = set()  # roots read on behalf of another (client.balance: trading)

    # ---- names and constants ------------------------------------------------------------------

    def constant(self, value: Any, prefix: str = "_K") -> str:
        key = (type(value).__name__, value)
        if key not in self._const_ids:
            name = f"{prefix}{len(self._const_ids)}"
            self._const_ids[key] = name
            self.constants[name] = value
        return self._const_ids[key]

    def client_block(self) -> list[str]:
        """Read every client field the code uses in one C call (``itemgetter``); a record that
        lacks one of them (a partial test record) takes the ``.get`` path instead."""
        record = self.reads.roots["client"]
        if not self.client_fields:
            return []
        gets = [f"{var} = {record}.get({name!r})" for var, name in self.client_fields]
        if len(self.client_fields) == 1:
            return gets
        getter = self.constant(itemgetter(*(name for _, name in self.client_fields)), "_G")
        targets = ", ".join(var for var, _ in self.client_fields)
        # only a plain dict: a defaultdict or Counter would answer a missing key with a value
        return [
            f"if {record}.__class__ is dict:",
            "    try:",
            f"        {targets} = {getter}({record})",
            "    except KeyError:",
            *("        " + g for g in gets),
            "else:",
            *("    " + g for g in gets),
        ]

    def stamp_block(self) -> list[str]:
        """Client timestamps to stamps: for aware datetimes one subtraction each; anything else
        (naive, epoch seconds, text) makes a subtraction fail, and then every one of them
        takes the general conversion (which leaves a finished stamp as it is)."""
        if not self.client_stamps:
            return []
        fast = [f"    if {var} is not None: {var} = {var} - _EPOCH" for var in self.client_stamps]
        slow = [f"    {var} = _to_stamp({var})" for var in self.client_stamps]
        return ["try:", *fast, "except TypeError:", *slow]

    def _literal(self, value: Any) -> str:
        """Inline a plain value; anything else becomes a named constant."""
        if value is None or value.__class__ in (bool, int, float, str):
            return repr(value)
        return self.constant(value)

    def temp(self) -> str:
        self._temps += 1
        return f"_t{self._temps}"

    def local_for(self, node: ast.Name) -> str:
        parts = node.parts
        if parts == ("now",):
            self.uses_now = True
            return "now"
        if len(parts) == 1 and parts[0] in self.lists:
            return self.constant(tuple(self.lists[parts[0]]), "_L")
        if parts in self.names:
            return self.names[parts]
        root = parts[0]
        if root == "score" and parts[1] in self.reads.score_locals:
            return self.reads.score_locals[parts[1]]
        if root == "band" and parts[1] in self.reads.band_locals:
            return self.reads.band_locals[parts[1]]
        var = "_" + "_".join(parts)
        self.names[parts] = var
        self.prologue.extend(self._read(var, node))
        return var

    def _read(self, var: str, node: ast.Name) -> list[str]:
        parts, roots = node.parts, self.reads.roots
        if len(parts) == 1:  # `ib` alone, for `ib == null`
            return [f"{var} = {roots[parts[0]]}"]
        root, name = parts
        record = roots.get(root, root)
        if root == "client":  # fetched all at once (see client_block); here only what follows
            self.client_fields.append((var, name))
            after = []
            if name == "stage":
                after.append(f"if {var} is None: {var} = _infer_stage({record})")
            if name == "registered_at":  # none given: a lead evaluated as they register, at now
                after.append(f"if {var} is None: {var} = _to_stamp({roots['now']})")
            if name == "balance":  # none given: the last snapshot's (SPEC 11), then the default
                trading = roots["trading"]
                self.also_reads.add("trading")
                after.append(f"if {var} is None and {trading} is not None: {var} = {trading}.get('balance')")
            default = self.reads.defaults.get(name)
            if default is not None:  # a default fills a missing key and a null alike
                after.append(f"if {var} is None: {var} = {self._literal(default)}")
            elif name != "stage" and node.type is not None and not node.type.nullable:
                message = self.constant((node.dotted, node.type), "_M")
                after.append(f"if {var} is None: raise _missing(*{message})")
            if node.type is not None and node.type.base == "timestamp":
                self.client_stamps.append(var)  # converted together, see stamp_block
                return after
            return [*after, *self._normalise(var, node.type)]
        elif root == "trading":
            fetch = f"({record}.get({name!r}) if {record} is not None else None)"
            if name == "balance":  # before any snapshot: the client's balance, 0
                client = roots["client"]
                return [f"{var} = {fetch}", f"if {var} is None: {var} = {client}.get('balance')",
                        f"if {var} is None: {var} = 0", *self._normalise(var, node.type)]
        elif root in ("score", "band"):
            fetch = f"{record}.get({name!r})"
        else:
            fetch = f"({record}.get({name!r}) if {record} is not None else None)"
        return [f"{var} = {fetch}", *self._normalise(var, node.type)]

    @staticmethod
    def _normalise(var: str, type_: Type | None) -> list[str]:
        if type_ is None:
            return []
        if type_.base == "timestamp":  # the common case (an aware datetime): one subtraction, no call
            return [
                f"if {var}.__class__ is _datetime and {var}.tzinfo is not None: {var} = {var} - _EPOCH",
                f"elif {var} is not None and {var}.__class__ is not _timedelta: {var} = _to_stamp({var})",
            ]
        if type_.base == "number":
            return [f"if {var}.__class__ is _Decimal: {var} = float({var})"]
        if type_.base == "list":
            return [f"if {var} is not None and {var}.__class__ is not tuple: {var} = tuple({var})"]
        return []

    def hold(self, code: str) -> tuple[str, str]:
        """(first use, later uses) of a value: a temporary unless the code is a plain name/literal."""
        if _SIMPLE.match(code):
            return code, code
        tmp = self.temp()
        return f"({tmp} := {code})", tmp

    # ---- expressions --------------------------------------------------------------------------

    def value(self, node: ast.Node) -> str:
        """Code for a value that is observed as such (and/or normalised to a bool)."""
        code = self.expr(node)
        return f"bool({code})" if isinstance(node, ast.BoolOp) else code

    def expr(self, node: ast.Node) -> str:
        method: Callable[[Any], str] = getattr(self, f"gen_{type(node).__name__}")
        return method(node)

    def gen_Literal(self, node: ast.Literal) -> str:
        if isinstance(node.value, timedelta):  # a folded duration
            return self.constant(node.value, "_D")
        return repr(node.value)

    def gen_Duration(self, node: ast.Duration) -> str:
        return self.constant(node.delta, "_D")

    def gen_ListLit(self, node: ast.ListLit) -> str:
        if all(isinstance(item, ast.Literal) for item in node.items):
            return self.constant(tuple(item.value for item in node.items if isinstance(item, ast.Literal)), "_L")
        return "(" + "".join(self.value(item) + ", " for item in node.items) + ")"

    def gen_Name(self, node: ast.Name) -> str:
        return self.local_for(node)

    def gen_Window(self, node: ast.Window) -> str:
        self.uses_now = True
        length = self.constant(node.length.delta, "_D")
        shift = self.constant(node.shift.delta if node.shift is not None else timedelta(0), "_D")
        call = f"window({node.source!r}, {node.metric!r}, now, {length}, {shift})"
        return f"(None if window is None else {call})"

    def gen_Neg(self, node: ast.Neg) -> str:
        code = self.expr(node.operand)
        if not _nullable(node.operand):
            return f"(-{code})"
        first, again = self.hold(code)
        return f"(None if {_is_none(first)} else -{again})"

    def gen_Not(self, node: ast.Not) -> str:
        return f"(not {self.expr(node.operand)})"

    def gen_BoolOp(self, node: ast.BoolOp) -> str:
        return f"({self.expr(node.left)} {node.op} {self.expr(node.right)})"

    def _null_guarded(self, operands: Iterable[ast.Node], build: Callable[[list[str]], str], extra: str = "") -> str:
        """``build(args)`` unless an operand that may be null is null (then None)."""
        firsts, agains, checks = [], [], []
        for operand in operands:
            code = self.value(operand)
            if _nullable(operand):
                first, again = self.hold(code)
                checks.append(_is_none(first))
                agains.append(again)
            else:
                agains.append(code)
            firsts.append(code)
        if extra:
            checks.append(extra.format(*agains))
        body = build(agains)
        if not checks:
            return f"({body})"
        return f"(None if {' or '.join(checks)} else {body})"

    def gen_BinOp(self, node: ast.BinOp) -> str:
        op = node.op
        if op == "%":
            return self._null_guarded((node.left, node.right), lambda a: f"_mod({a[0]}, {a[1]})")
        if op == "/":
            return self._null_guarded((node.left, node.right), lambda a: f"{a[0]} / {a[1]}", extra="not {1}")
        return self._null_guarded((node.left, node.right), lambda a: f"{a[0]} {op} {a[1]}")

    def gen_Compare(self, node: ast.Compare) -> str:
        op, left, right = node.op, node.left, node.right
        if op in ("==", "!=") and (_is_null(left) or _is_null(right)):
            other = right if _is_null(left) else left
            code = self.value(other)
            constant = _literal(code)
            if constant is not _NOT_LITERAL:  # decided now (and no `<literal> is None` for Python to warn about)
                return repr((constant is None) == (op == "=="))
            return f"({code} {'is' if op == '==' else 'is not'} None)"
        if op == "in" and isinstance(right, ast.ListLit | ast.Name) and self._constant_list(right) is not None:
            return f"({self.value(left)} in {self._constant_set(right)})"
        if op == "not in" and self._constant_list(right) is not None:
            first, again = self.hold(self.value(left))
            return f"({_is_none(first, negate=True)} and {again} not in {self._constant_set(right)})"
        if op == "matches":
            assert isinstance(right, ast.Literal) and isinstance(right.value, str)
            search = self.constant(re.compile(right.value, re.ASCII).search, "_R")
            first, again = self.hold(self.value(left))
            if not _nullable(left):
                return f"({search}({first}) is not None)"
            return f"({_is_none(first, negate=True)} and {search}({again}) is not None)"
        python_op = {"in": "in", "not in": "not in"}.get(op, op)
        if op == "==" and not (_nullable(left) and _nullable(right)):
            return f"({self.value(left)} == {self.value(right)})"  # None == value is already False
        checks, values = [], []
        for side in (left, right):
            code = self.value(side)
            if _nullable(side):
                first, again = self.hold(code)
                checks.append(_is_none(first, negate=True))
                values.append(again)
            else:
                values.append(code)
        comparison = f"{values[0]} {python_op} {values[1]}"
        return f"({' and '.join([*checks, comparison])})"

    def _constant_list(self, node: ast.Node) -> tuple[Any, ...] | None:
        if isinstance(node, ast.ListLit) and all(isinstance(i, ast.Literal) for i in node.items):
            return tuple(i.value for i in node.items if isinstance(i, ast.Literal))
        if isinstance(node, ast.Name) and len(node.parts) == 1 and node.parts[0] in self.lists:
            return tuple(self.lists[node.parts[0]])
        return None

    def _constant_set(self, node: ast.Node) -> str:
        values = self._constant_list(node)
        assert values is not None
        return self.constant(frozenset(values), "_S")

    def gen_Cond(self, node: ast.Cond) -> str:
        return f"({self.value(node.then)} if {self.expr(node.test)} else {self.value(node.else_)})"

    def gen_Call(self, node: ast.Call) -> str:
        func, args = node.func, node.args
        if func in ("days_since", "hours_since"):
            self.uses_now = True
            unit = "_DAY" if func == "days_since" else "_HOUR"
            return self._null_guarded(args, lambda a: f"(now - {a[0]}) / {unit}")
        if func == "coalesce":
            return self._coalesce(list(args))
        builders: dict[str, Callable[[list[str]], str]] = {
            "days_between": lambda a: f"({a[1]} - {a[0]}) / _DAY",
            "lower": lambda a: f"_lower({a[0]})",
            "upper": lambda a: f"_upper({a[0]})",
            "len": lambda a: f"len({a[0]})",
            "abs": lambda a: f"abs({a[0]})",
            "min": lambda a: f"min({a[0]}, {a[1]})",
            "max": lambda a: f"max({a[0]}, {a[1]})",
            "round": lambda a: f"_round({a[0]})",
            "startswith": lambda a: f"{a[0]}.startswith({a[1]})",
            "endswith": lambda a: f"{a[0]}.endswith({a[1]})",
            "contains": lambda a: f"{a[1]} in {a[0]}",
        }
        return self._null_guarded(args, builders[func])

    def _coalesce(self, args: list[ast.Node]) -> str:
        codes: list[str] = []
        for arg in args:
            code = self.value(arg)
            constant = _literal(code)
            if constant is None:
                continue  # a null argument never wins
            codes.append(code)
            if constant is not _NOT_LITERAL:
                break  # nothing after a constant is ever reached
        if not codes:
            return "None"
        code = codes[-1]
        for earlier in reversed(codes[:-1]):
            first, again = self.hold(earlier)
            code = f"({again} if {_is_none(first, negate=True)} else {code})"
        return code


_NOT_LITERAL = object()


_ARITHMETIC_OF_NUMBERS = re.compile(r"[\s()+\-*0-9.]+")


def _literal(code: str) -> Any:
    """The value of generated code that is a constant (a literal, or arithmetic on number
    literals such as ``(-(-0))``), else ``_NOT_LITERAL``."""
    try:
        return literal_eval(code)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    if _ARITHMETIC_OF_NUMBERS.fullmatch(code):  # our own code, made of digits and operators only
        try:
            return eval(code, {"__builtins__": {}})
        except (ArithmeticError, SyntaxError, ValueError, MemoryError, RecursionError):
            return _NOT_LITERAL
    return _NOT_LITERAL


def _is_none(code: str, negate: bool = False) -> str:
    """``code is None`` (or ``is not None``), decided now when the code is a literal."""
    constant = _literal(code)
    if constant is not _NOT_LITERAL:
        return repr((constant is None) != negate)
    return f"{code} is not None" if negate else f"{code} is None"


def _nullable(node: ast.Node) -> bool:
    return node.type is None or node.type.nullable or node.type.base == "error"


def _is_null(node: ast.Node) -> bool:
    return isinstance(node, ast.Literal) and node.value is None


def build_function(
    name: str,
    params: str,
    body: list[str],
    gen: CodeGen,
    origin: str,
    head: Iterable[str] = (),
    on_error: str | None = None,
) -> Callable[..., Any]:
    """Compile ``def name(params): <head> <prologue> <body>`` with the generator's constants.

    With ``on_error`` (an expression over ``exc``), any exception but an EvaluationError is
    replaced by that expression's value, raised ``from exc``.
    """
    inner = [*head]
    if gen.uses_now:
        inner.append("_last = _now.last")
        inner.append("if now is _last[0]: now = _last[1]")
        inner.append("elif now.__class__ is not _timedelta: now = _now(now)")
    inner.extend(gen.client_block())
    inner.extend(gen.prologue)
    inner.extend(gen.stamp_block())
    inner.extend(body)
    if on_error is None:
        lines = [f"def {name}({params}):", *("    " + line for line in inner)]
    else:
        lines = [
            f"def {name}({params}):",
            "    try:",
            *("        " + line for line in inner),
            "    except _EvaluationError:",
            "        raise",
            "    except Exception as exc:",
            f"        raise {on_error} from exc",
        ]
    source = "\n".join(lines) + "\n"
    namespace: dict[str, Any] = {**RUNTIME, **gen.constants, "_now": _NowCache()}
    exec(compile(source, f"<crmcore rules: {origin}>", "exec"), namespace)
    function: Callable[..., Any] = namespace[name]
    function.__crmcore_source__ = source  # type: ignore[attr-defined]
    return function


SCOPE_ROOTS = {
    "now": "s.now",
    "client": "s.client",
    "ib": "s.ib",
    "trading": "s.trading",
    "agent": "s.agent",
    "event": "s.event",
    "score": "s.scores",
    "band": "s.bands",
}


def compile_expression(
    node: ast.Node,
    lists: Mapping[str, tuple[Any, ...]] | None = None,
    defaults: Mapping[str, Any] | None = None,
    origin: str = "expression",
) -> Callable[[Any], Any]:
    """A typed expression as a function of an :class:`interpreter.Scope`."""
    reads = Reads(SCOPE_ROOTS, defaults=defaults if defaults is not None else CLIENT_DEFAULTS)
    gen = CodeGen(reads, lists or {})
    code = gen.value(node)
    head = ["now = s.now", "window = s.window"]
    return build_function("_expression", "s", [f"return {code}"], gen, origin, head)
