"""Diagnostics: every problem in a rule file is a value with a code, a position and a message.

Positions are always in the user's file. An expression embedded in a YAML
string carries an :class:`Origin` that maps each character of the string back
to the file (through quotes, escapes and block indentation), as cel-go's policy
loader does.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any


class Code:
    """Stable diagnostic codes (documented in docs/language.md)."""

    SYNTAX = "E100"  # the expression does not parse
    BAD_STRING = "E101"  # a string literal or number is malformed
    TOO_COMPLEX = "E102"  # size or nesting limit exceeded
    UNKNOWN_NAME = "E200"  # a name or field not in the schema
    TYPE_MISMATCH = "E201"  # an operator or function applied to the wrong types
    ARITY = "E202"  # a function called with the wrong number of arguments
    NOT_BOOL = "E203"  # a condition that is not a bool
    NOT_NUMBER = "E204"  # points or priority that are not numeric
    BAD_REGEX = "E205"  # a `matches` pattern that does not compile or may not terminate
    BAD_DURATION = "E206"  # a duration that is malformed or not allowed here
    FORBIDDEN = "E207"  # a name this position may not use (agent outside require, _private)
    UNKNOWN_BAND = "E208"  # compared a band with a name that is not one of its bands
    YAML = "E300"  # the file is not valid YAML
    STRUCTURE = "E301"  # a key is missing, unknown or of the wrong shape
    DUPLICATE = "E302"  # a name defined twice
    REFERENCE = "E303"  # a desk, agent, score or queue that does not exist
    CYCLE = "E304"  # scores that depend on each other
    FILE = "E305"  # a path that cannot be read
    CRM = "E306"  # a .crm file that does not parse (outside an expression)
    SQL_UNSUPPORTED = "E400"  # a construct the SQL compiler cannot express exactly
    NO_FALLBACK = "W500"  # routing can leave a client unmatched (a warning)
    UNKNOWN_AGENT = "W501"  # a routing rule names an agent the rule files do not define (a warning)
    UNDECLARED_DESK = "W502"  # a desk named where the rule files declare no desks at all (a warning)


@dataclass(frozen=True, slots=True)
class SourceFile:
    """A file's text, with offset -> line/column lookup."""

    path: str
    text: str
    _line_starts: list[int] = field(default_factory=list, compare=False, repr=False)

    def __post_init__(self) -> None:
        starts = [0]
        starts.extend(i + 1 for i, ch in enumerate(self.text) if ch == "\n")
        self._line_starts.extend(starts)

    def position(self, offset: int) -> tuple[int, int]:
        """1-based (line, column) of a character offset."""
        offset = max(0, min(offset, len(self.text)))
        line = bisect.bisect_right(self._line_starts, offset) - 1
        return line + 1, offset - self._line_starts[line] + 1

    def line_text(self, line: int) -> str:
        if not 1 <= line <= len(self._line_starts):
            return ""
        start = self._line_starts[line - 1]
        end = self.text.find("\n", start)
        return self.text[start:] if end < 0 else self.text[start:end]


@dataclass(frozen=True, slots=True)
class Origin:
    """Where an expression's text sits in a file: ``offsets[i]`` is the file offset of char i."""

    source: SourceFile
    offsets: Sequence[int]
    text: str = ""

    def file_offset(self, index: int) -> int:
        if not self.offsets:
            return 0
        if index >= len(self.offsets):
            return self.offsets[-1] + (index - len(self.offsets) + 1)
        return self.offsets[max(index, 0)]

    @classmethod
    def standalone(cls, text: str, path: str = "<expr>") -> Origin:
        """An expression that is a whole 'file' of its own (tests, the REPL, `evaluate`)."""
        return cls(SourceFile(path, text), range(len(text)), text)


@dataclass(frozen=True, slots=True)
class Diagnostic:
    code: str
    message: str
    path: str
    line: int
    column: int
    source_line: str = ""
    severity: str = "error"

    def render(self) -> str:
        """``file:line:col: error: message [CODE]`` (SPEC 8's form, the stable code last), the
        source line and a caret."""
        head = f"{self.path}:{self.line}:{self.column}: {self.severity}: {self.message} [{self.code}]"
        if not self.source_line:
            return head
        caret = "".join("\t" if ch == "\t" else " " for ch in self.source_line[: self.column - 1])
        return f"{head}\n    {self.source_line}\n    {caret}^"

    def as_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "file": self.path,
            "line": self.line,
            "column": self.column,
            "source_line": self.source_line,
        }

    @classmethod
    def at(cls, code: str, message: str, source: SourceFile, offset: int, severity: str = "error") -> Diagnostic:
        line, column = source.position(offset)
        return cls(code, message, source.path, line, column, source.line_text(line), severity)


class CrmError(Exception):
    """Base of every error crmcore raises on purpose."""


class EvaluationError(CrmError):
    """A host record that the rules cannot be evaluated on (a required field missing, a wrong type)."""


class RuleError(CrmError):
    """A rule set (or one expression) that cannot be loaded; carries every diagnostic found."""

    def __init__(self, diagnostics: Iterable[Diagnostic]):
        self.diagnostics: list[Diagnostic] = list(diagnostics)
        super().__init__(self.render())

    def render(self) -> str:
        return "\n".join(d.render() for d in self.diagnostics)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    # first diagnostic's position, for callers that want one place
    @property
    def line(self) -> int:
        return self.diagnostics[0].line if self.diagnostics else 0

    @property
    def column(self) -> int:
        return self.diagnostics[0].column if self.diagnostics else 0

    @property
    def code(self) -> str:
        return self.diagnostics[0].code if self.diagnostics else ""


class Collector:
    """Gathers diagnostics so that a file reports all its errors at once."""

    def __init__(self) -> None:
        self.diagnostics: list[Diagnostic] = []
        self._seen: set[Diagnostic] = set()

    def add(self, diagnostic: Diagnostic) -> None:
        if diagnostic not in self._seen:
            self._seen.add(diagnostic)
            self.diagnostics.append(diagnostic)

    def error_at(self, code: str, message: str, origin: Origin, index: int) -> None:
        self.add(Diagnostic.at(code, message, origin.source, origin.file_offset(index)))

    def extend(self, diagnostics: Iterable[Diagnostic]) -> None:
        for d in diagnostics:
            self.add(d)

    @property
    def has_errors(self) -> bool:
        return any(d.severity == "error" for d in self.diagnostics)

    def raise_if_errors(self) -> None:
        if self.has_errors:
            raise RuleError(sorted(self.diagnostics, key=lambda d: (d.path, d.line, d.column)))
