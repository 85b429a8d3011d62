"""The language's types: ``bool int number string timestamp duration list<T>`` and ``T?``.

Time is exact to the microsecond at run time (see values.py: a timestamp is a
``timedelta`` since the epoch in Python, BIGINT microseconds in SQL); a ``record``
is a root such as ``ib`` that can only be tested against ``null``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SCALARS = frozenset({"bool", "int", "number", "string", "timestamp", "duration"})


@dataclass(frozen=True, slots=True)
class Type:
    base: str  # a scalar, "list", "null" (the literal null) or "record"
    nullable: bool = False
    elem: Type | None = None

    def __str__(self) -> str:
        text = f"list<{self.elem}>" if self.base == "list" else self.base
        return text + "?" if self.nullable and self.base != "null" else text

    def null(self) -> Type:
        return Type(self.base, True, self.elem)

    def nonnull(self) -> Type:
        return Type(self.base, False, self.elem)

    def maybe(self, nullable: bool) -> Type:
        return self.null() if nullable else self

    @property
    def numeric(self) -> bool:
        return self.base in ("int", "number")

    @property
    def ordered(self) -> bool:
        return self.base in ("int", "number", "string", "timestamp", "duration")


BOOL = Type("bool")
INT = Type("int")
NUMBER = Type("number")
STRING = Type("string")
TIMESTAMP = Type("timestamp")
DURATION = Type("duration")
NULL = Type("null", True)
RECORD = Type("record")


def list_of(elem: Type) -> Type:
    return Type("list", False, elem)


def comparable(a: Type, b: Type) -> bool:
    """Whether values of the two types may be compared with ``==`` or ordered."""
    if a.base == "null" or b.base == "null":
        return True
    if a.numeric and b.numeric:
        return True
    if a.base == "list" and b.base == "list":
        return a.elem is not None and b.elem is not None and comparable(a.elem, b.elem)
    return a.base == b.base


def join(a: Type, b: Type) -> Type | None:
    """The type of a value that is either ``a`` or ``b`` (``if``, ``coalesce``)."""
    if a.base == "null":
        return b.null()
    if b.base == "null":
        return a.null()
    nullable = a.nullable or b.nullable
    if a.numeric and b.numeric:
        return (INT if a.base == b.base == "int" else NUMBER).maybe(nullable)
    if a.base == b.base and a.elem == b.elem:
        return a.maybe(nullable)
    return None


_TYPE_TEXT = re.compile(r"^\s*(?:list\s*<\s*(\w+)\s*>|(\w+))\s*(\?)?\s*$")


def parse_type(text: str) -> Type:
    """``"string?"`` -> ``Type("string", True)``; raises ValueError on anything else."""
    match = _TYPE_TEXT.match(text)
    if not match:
        raise ValueError(f"'{text}' is not a type")
    elem_name, name, question = match.groups()
    if elem_name is not None:
        if elem_name not in SCALARS:
            raise ValueError(f"'{elem_name}' is not a type (expected one of {', '.join(sorted(SCALARS))})")
        return Type("list", question is not None, Type(elem_name))
    if name not in SCALARS:
        raise ValueError(f"'{name}' is not a type (expected one of {', '.join(sorted(SCALARS))} or list<T>)")
    return Type(name, question is not None)
