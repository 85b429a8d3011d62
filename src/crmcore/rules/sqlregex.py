"""Regular expressions in SQL: the subset of Python's ``re.ASCII`` syntax that PostgreSQL's
advanced regular expressions match exactly the same way, translated; anything else refused."""

from __future__ import annotations

import re
import string


class RegexRefused(Exception):
    """A pattern outside the subset PostgreSQL matches exactly as Python does."""


_REPEAT = re.compile(r"\{(\d*)(,(\d*))?\}")
_PUNCTUATION = frozenset(string.punctuation + " ")
PG_DUPMAX = 255  # PostgreSQL's largest repeat count


class _RegexTranslator:
    """Python ``re.ASCII`` pattern -> PostgreSQL ARE with the same set of matching strings.

    Python's ``.`` excludes a newline and its ``$`` also matches before a final
    newline; PostgreSQL's do neither, so they become ``[^\n]`` and ``(?=\n?$)``.
    Anything else that differs, or might, is refused.
    """

    def __init__(self, pattern: str):
        self.pattern = pattern
        self.i = 0
        self.icase = False

    def translate(self) -> str:
        prefix = ""
        if self.pattern.startswith("(?i)"):
            self.icase, self.i, prefix = True, 4, "(?i)"
        body = self.alternation()
        if self.i < len(self.pattern):
            raise RegexRefused(f"unbalanced ')' at {self.i}")
        return prefix + body

    def peek(self, ahead: int = 0) -> str:
        at = self.i + ahead
        return self.pattern[at] if at < len(self.pattern) else ""

    def alternation(self) -> str:
        branches = [self.sequence()]
        while self.peek() == "|":
            self.i += 1
            branches.append(self.sequence())
        return "|".join(branches)

    def sequence(self) -> str:
        out: list[str] = []
        while self.peek() not in ("", "|", ")"):
            atom, repeatable = self.atom()
            repeat = self.repeat()
            if repeat and not repeatable:
                raise RegexRefused("a repeated anchor")
            out.append(atom + repeat)
        return "".join(out)

    def atom(self) -> tuple[str, bool]:
        ch = self.peek()
        if ch == "(":
            return self.group(), True
        if ch == "[":
            return self.char_class(), True
        if ch == "\\":
            return self.escape(in_class=False), True
        self.i += 1
        if ch == ".":
            return "[^\\n]", True
        if ch == "^":
            return "^", False
        if ch == "$":
            return "(?=\\n?$)", False
        if ch in "*+?{}]":
            raise RegexRefused(f"'{ch}' where a character is expected (escape it)")
        return ch, True

    def group(self) -> str:
        if self.pattern.startswith("(?:", self.i):
            self.i += 3
            opening = "(?:"
        elif self.pattern.startswith("(?", self.i):
            raise RegexRefused("'(?' groups other than '(?:' and a leading '(?i)'")
        else:
            self.i += 1
            opening = "("
        inner = self.alternation()
        if self.peek() != ")":
            raise RegexRefused("an unclosed group")
        self.i += 1
        return opening + inner + ")"

    def repeat(self) -> str:
        ch = self.peek()
        if ch in ("*", "+", "?"):
            self.i += 1
            text = ch
        elif ch == "{":
            match = _REPEAT.match(self.pattern, self.i)
            if match is None or (match.group(1) == "" and not match.group(3)):
                raise RegexRefused("'{' that is not a repeat count such as {2,5}")
            low = int(match.group(1) or 0)
            high = None if match.group(2) and not match.group(3) else int(match.group(3) or low)
            if max(low, high or 0) > PG_DUPMAX:
                raise RegexRefused(f"repeat counts above {PG_DUPMAX}")
            text = f"{{{low}}}" if not match.group(2) else f"{{{low},}}" if high is None else f"{{{low},{high}}}"
            self.i = match.end()
        else:
            return ""
        if self.peek() == "?":  # lazy: the same strings match, only the chosen span differs
            self.i += 1
            text += "?"
        if self.peek() and self.peek() in "*+?{":
            raise RegexRefused("possessive or repeated repeats")
        return text

    def escape(self, *, in_class: bool) -> str:
        ch = self.peek(1)
        self.i += 2
        if ch in ("d", "w", "s", "n", "t", "r", "f", "v") or (ch in ("D", "W", "S") and not in_class):
            return "\\" + ch
        if ch and ch in _PUNCTUATION:
            return "\\" + ch
        raise RegexRefused(f"the escape '\\{ch}'")

    def char_class(self) -> str:
        self.i += 1
        out = ["["]
        if self.peek() == "^":
            out.append("^")
            self.i += 1
        first = True
        while True:
            ch = self.peek()
            if ch == "":
                raise RegexRefused("an unclosed '['")
            if ch == "]" and not first:
                self.i += 1
                return "".join(out) + "]"
            if ch in "[]":
                raise RegexRefused(f"'{ch}' inside a class (escape it)")
            if ch + self.peek(1) in ("--", "&&", "~~", "||"):
                raise RegexRefused(f"'{ch}{ch}' inside a class")
            if ch == "\\":
                out.append(self.escape(in_class=True))
                if self.peek() == "-" and self.peek(1) != "]":
                    raise RegexRefused("a range from an escape")
            elif ch == "-" and not first and self.peek(1) != "]":
                raise RegexRefused("a '-' that is neither a range nor first or last in a class")
            elif self.peek(1) == "-" and self.peek(2) not in ("]", ""):
                out.append(self.char_range(ch, self.peek(2)))
            else:
                out.append(ch)
                self.i += 1
            first = False

    def char_range(self, low: str, high: str) -> str:
        if high in "\\[]":
            raise RegexRefused("a range to an escape or bracket")
        if low > high:
            raise RegexRefused(f"the empty range {low}-{high}")
        letters = [c for c in string.ascii_letters if low <= c <= high]
        same_case = low.islower() == high.islower() and low.isascii() and high.isascii() and low.isalpha() and high.isalpha()
        if self.icase and letters and not same_case:
            raise RegexRefused(f"the range {low}-{high} mixes letters and other characters under (?i)")
        self.i += 3
        return f"{low}-{high}"


def to_postgres(pattern: str) -> str:
    """A Python regex (``re.search`` with ``re.ASCII``) as a PostgreSQL regex with the same matches.

    Raises :class:`RegexRefused` for a pattern outside the subset both engines agree on.
    """
    return _RegexTranslator(pattern).translate()
