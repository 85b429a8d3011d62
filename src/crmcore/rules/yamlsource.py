"""YAML with positions: the document's data, and where in the file each value and each
character of an expression string stands (through quotes, escapes, folding and blocks)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from crmcore.rules.diagnostics import Code, Diagnostic, Origin, SourceFile

Path = tuple[str | int, ...]

_DOUBLE_ESCAPES = {
    "0": "\0", "a": "\a", "b": "\b", "t": "\t", "\t": "\t", "n": "\n", "v": "\v", "f": "\f",
    "r": "\r", "e": "\x1b", " ": " ", '"': '"', "/": "/", "\\": "\\", "N": "\x85", "_": "\xa0",
    "L": "\u2028", "P": "\u2029",
}
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}


def _units(raw: str, style: str | None) -> Iterator[tuple[str, int]]:
    """The raw text of a scalar as (decoded text, raw offset) units, quotes and headers skipped."""
    if style in ("|", ">"):  # libyaml reports a plain scalar's style as "", PyYAML as None
        start = raw.find("\n") + 1 if "\n" in raw else len(raw)
        yield from ((ch, i) for i, ch in enumerate(raw[start:], start))
        return
    if style == "'":
        i, end = 1, len(raw) - 1
        while i < end:
            if raw[i] == "'" and i + 1 < end and raw[i + 1] == "'":
                yield "'", i
                i += 2
            else:
                yield raw[i], i
                i += 1
        return
    if style == '"':
        i, end = 1, len(raw) - 1
        while i < end:
            ch = raw[i]
            if ch == "\\" and i + 1 < end:
                nxt = raw[i + 1]
                if nxt == "\n":  # escaped line break: nothing, and the next line's indent goes too
                    i += 2
                    while i < end and raw[i] in " \t":
                        i += 1
                    continue
                if nxt in _HEX_ESCAPES:
                    width = _HEX_ESCAPES[nxt]
                    try:
                        yield chr(int(raw[i + 2 : i + 2 + width], 16)), i
                    except ValueError:
                        yield nxt, i
                    i += 2 + width
                    continue
                yield _DOUBLE_ESCAPES.get(nxt, nxt), i
                i += 2
            else:
                yield ch, i
                i += 1
        return
    yield from ((ch, i) for i, ch in enumerate(raw))


def scalar_offsets(source: SourceFile, node: yaml.ScalarNode) -> list[int]:
    """File offset of each character of a scalar's value.

    The value is aligned with the scalar's decoded source text: a character
    matches the next equal one, skipping only the blanks that folding and block
    indentation remove; a folded line break stands for the space or newline it became.
    """
    start, end = node.start_mark.index, node.end_mark.index
    units = list(_units(source.text[start:end], node.style))
    value: str = node.value
    offsets: list[int] = []
    u = 0
    for ch in value:
        while u < len(units) and units[u][0] != ch:
            decoded = units[u][0]
            if ch in " \n" and decoded == "\n":
                break
            if decoded not in " \t\n\r":
                break  # out of step (should not happen); keep the nearest position
            u += 1
        position = units[min(u, len(units) - 1)][1] if units else 0
        offsets.append(start + position)
        if u < len(units):
            u += 1
    return offsets


@dataclass
class YamlDocument:
    """A loaded YAML file: its data, and the node behind each path for positions."""

    source: SourceFile
    data: Any
    nodes: dict[Path, yaml.Node] = field(default_factory=dict)

    def node_at(self, path: Path) -> yaml.Node | None:
        """The node at ``path``, or at its nearest ancestor that exists."""
        while path not in self.nodes and path:
            path = path[:-1]
        return self.nodes.get(path)

    def offset(self, path: Path, key: bool = False) -> int:
        node = self.nodes.get((*path, "<key>")) if key else None
        node = node or self.node_at(path)
        return node.start_mark.index if node is not None else 0

    def origin(self, path: Path, text: str) -> Origin:
        """Where the characters of the expression ``text`` at ``path`` stand in the file.

        A value that is not a string in the file (``points: 20``) or that is not there at
        all (a default) maps every character to the value, or to its nearest ancestor.
        """
        node = self.nodes.get(path)
        if isinstance(node, yaml.ScalarNode) and node.value == text and node.tag.endswith(":str"):
            return Origin(self.source, scalar_offsets(self.source, node), text)
        at = self.offset(path)
        return Origin(self.source, [at] * max(len(text), 1), text)

    def diagnostic(self, code: str, message: str, path: Path, key: bool = False) -> Diagnostic:
        return Diagnostic.at(code, message, self.source, self.offset(path, key))


def expression_text(value: Any) -> str:
    """A scalar written where an expression is expected (``when: true``, ``points: 20``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: 10x faster


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    """SafeLoader with YAML 1.2 booleans: only true/false, so that `on:` stays a key."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


MAX_DEPTH = 64  # nesting of mappings and lists in a rule file
MAX_NODES = 200_000  # values in a rule file, aliases expanded ("billion laughs")
MAX_BYTES = 20_000_000


def _too_deep(source: SourceFile) -> Diagnostic | None:
    """Refuse nesting that would exhaust the stack of the YAML composer (libyaml recurses)."""
    depth = 0
    for event in yaml.parse(source.text, Loader=_Loader):
        if isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                offset = event.start_mark.index if event.start_mark is not None else 0
                return Diagnostic.at(Code.YAML, f"nested deeper than {MAX_DEPTH} levels", source, offset)
        elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
            depth -= 1
    return None


def load_yaml(source: SourceFile) -> tuple[YamlDocument | None, list[Diagnostic]]:
    """Parse a YAML file; on a syntax error return the diagnostic at its mark."""
    if len(source.text) > MAX_BYTES:
        return None, [Diagnostic.at(Code.YAML, f"file larger than {MAX_BYTES:,} characters", source, 0)]
    try:
        too_deep = _too_deep(source)
        if too_deep is not None:
            return None, [too_deep]
        loader = _Loader(source.text)
        try:
            root = loader.get_single_node()
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        offset = mark.index if mark is not None else 0
        message = f"invalid YAML: {err.problem or err.context or 'syntax error'}"
        return None, [Diagnostic.at(Code.YAML, message, source, offset)]
    except yaml.YAMLError as err:
        return None, [Diagnostic.at(Code.YAML, f"invalid YAML: {err}", source, 0)]
    except (UnicodeError, ValueError) as err:  # e.g. a lone surrogate in text given to loads()
        return None, [Diagnostic.at(Code.YAML, f"not valid text: {err}", source, 0)]
    document = YamlDocument(source, data)
    problems: list[Diagnostic] = []
    if root is not None and not _index(document, root, (), problems):
        return None, [Diagnostic.at(Code.YAML, f"more than {MAX_NODES:,} values (aliases expanded)", source, 0)]
    return document, problems


def _index(document: YamlDocument, node: yaml.Node, path: Path, problems: list[Diagnostic]) -> bool:
    """Record the node behind every path; False when there are too many (aliases expanded)."""
    stack: list[tuple[yaml.Node, Path]] = [(node, path)]
    while stack:
        current, at = stack.pop()
        document.nodes[at] = current
        if len(document.nodes) > MAX_NODES:
            return False
        if isinstance(current, yaml.MappingNode):
            seen: dict[str, yaml.Node] = {}
            for key_node, value_node in current.value:
                key = str(key_node.value)
                if key in seen:
                    line, _ = document.source.position(seen[key].start_mark.index)
                    problems.append(Diagnostic.at(
                        Code.DUPLICATE, f"duplicate key '{key}' (first at line {line})",
                        document.source, key_node.start_mark.index,
                    ))
                seen[key] = key_node
                document.nodes[(*at, key, "<key>")] = key_node
                stack.append((value_node, (*at, key)))
        elif isinstance(current, yaml.SequenceNode):
            stack.extend((item, (*at, i)) for i, item in enumerate(current.value))
    return True
