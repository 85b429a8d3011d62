"""The expression AST: small frozen nodes, each with its source span.

Nodes declare their children in ``fields`` (as jinja2's nodes do), so generic
walkers need no per-node code. ``type`` is empty after parsing and filled in by
the checker, which returns a new, typed tree; nodes never check themselves.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, ClassVar

from crmcore.rules.types import Type


@dataclass(frozen=True, slots=True)
class Span:
    """Character offsets ``[start, end)`` inside the expression's source text."""

    start: int
    end: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    span: Span = field(default=Span(0, 0), compare=False, repr=False)
    type: Type | None = field(default=None, compare=False, repr=False)

    fields: ClassVar[tuple[str, ...]] = ()

    def children(self) -> Iterator[Node]:
        for name in self.fields:
            value = getattr(self, name)
            if isinstance(value, Node):
                yield value
            elif isinstance(value, tuple):
                yield from (item for item in value if isinstance(item, Node))

    def walk(self) -> Iterator[Node]:
        """This node and all below it, parents first (iterative: depth is unbounded)."""
        stack: list[Node] = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(list(node.children())))

    def with_type(self, type_: Type, **changes: Any) -> Node:
        return replace(self, type=type_, **changes)


@dataclass(frozen=True, slots=True)
class Literal(Node):
    """``42``, ``3.5``, ``"DE"``, ``true``, ``null``; ``value`` is the Python value."""

    value: bool | int | float | str | None


@dataclass(frozen=True, slots=True)
class Duration(Node):
    """``90s``, ``15m``, ``24h``, ``30d``, ``2w``; kept as written for printing."""

    amount: int | float
    unit: str

    UNIT_SECONDS: ClassVar[dict[str, int]] = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

    @property
    def seconds(self) -> float:
        return float(self.amount * self.UNIT_SECONDS[self.unit])

    @property
    def delta(self) -> timedelta:
        """The exact duration (``1.5h`` is 5,400 seconds)."""
        return timedelta(seconds=self.amount * self.UNIT_SECONDS[self.unit])


@dataclass(frozen=True, slots=True)
class ListLit(Node):
    items: tuple[Node, ...]
    fields: ClassVar[tuple[str, ...]] = ("items",)


@dataclass(frozen=True, slots=True)
class Name(Node):
    """A dotted name: ``now``, ``TIER1``, ``client.country``, ``score.lead``."""

    parts: tuple[str, ...]

    @property
    def dotted(self) -> str:
        return ".".join(self.parts)


@dataclass(frozen=True, slots=True)
class Neg(Node):
    operand: Node
    fields: ClassVar[tuple[str, ...]] = ("operand",)


@dataclass(frozen=True, slots=True)
class Not(Node):
    operand: Node
    fields: ClassVar[tuple[str, ...]] = ("operand",)


@dataclass(frozen=True, slots=True)
class BinOp(Node):
    """Arithmetic: ``+ - * / %``."""

    op: str
    left: Node
    right: Node
    fields: ClassVar[tuple[str, ...]] = ("left", "right")


@dataclass(frozen=True, slots=True)
class Compare(Node):
    """``== != < <= > >= in not_in matches`` (never chained)."""

    op: str
    left: Node
    right: Node
    fields: ClassVar[tuple[str, ...]] = ("left", "right")


@dataclass(frozen=True, slots=True)
class BoolOp(Node):
    """``and`` / ``or``; the result is always a bool (null counts as false)."""

    op: str
    left: Node
    right: Node
    fields: ClassVar[tuple[str, ...]] = ("left", "right")


@dataclass(frozen=True, slots=True)
class Cond(Node):
    """``if test then then_ else else_``."""

    test: Node
    then: Node
    else_: Node
    fields: ClassVar[tuple[str, ...]] = ("test", "then", "else_")


@dataclass(frozen=True, slots=True)
class Call(Node):
    """A built-in function: ``days_since(t)``, ``coalesce(a, b)``."""

    func: str
    args: tuple[Node, ...]
    fields: ClassVar[tuple[str, ...]] = ("args",)


@dataclass(frozen=True, slots=True)
class Window(Node):
    """An activity window: ``deposits.count(30d)``, ``deposits.count(30d, 30d)``."""

    source: str
    metric: str
    length: Duration
    shift: Duration | None
    fields: ClassVar[tuple[str, ...]] = ()


def strip(node: Node) -> Node:
    """The same tree without spans and types, for structural comparison in tests."""
    changes: dict[str, Any] = {"span": Span(0, 0), "type": None}
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if isinstance(value, Node):
            changes[f.name] = strip(value)
        elif isinstance(value, tuple):
            changes[f.name] = tuple(strip(v) if isinstance(v, Node) else v for v in value)
    return replace(node, **changes)
