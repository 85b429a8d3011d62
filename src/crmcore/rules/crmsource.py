"""The ``.crm`` syntax: a file's text -> the same data a YAML rule file gives, and where
each value (and each character of each expression) stands in the file.

The grammar is ``grammar.lark`` (the expression language) followed by ``crm.lark`` (the
declarations), parsed as one LALR grammar, so an expression ends exactly where the
expression language says it does. The data then goes through the same pydantic model,
merge and checks as YAML (see loader.py); this module only knows the syntax.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from crmcore.rules.diagnostics import Code, Diagnostic, Origin, SourceFile
from crmcore.rules.parser import MAX_DEPTH, bracket_depth, unescape
from crmcore.rules.yamlsource import MAX_BYTES

Path = tuple[str | int, ...]

# Keys whose value is a list even when one item is written without brackets (`notify agent`).
LIST_SETTINGS = frozenset({"languages", "countries", "notify", "actions"})

# The keywords of both grammars (fmt quotes a setting key that is one).
KEYWORDS = frozenset({
    "version", "list", "schema", "desk", "agent", "score", "rule", "when", "band", "route", "by",
    "require", "trigger", "on", "priority", "target", "per", "for", "true", "false", "null",
    "if", "then", "else", "and", "or", "not", "in", "matches",
})
BARE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
BARE_DURATION = re.compile(r"[0-9]+(\.[0-9]+)?[smhdw]")

_READABLE = {
    "ID": "a name", "NAME": "a name", "STRING": "a string", "NUMBER": "a number", "DURATION": "a duration",
    "TYPE": "a type such as string?", "COMPARE_OP": "a comparison", "ADD_OP": "'+' or '-'",
    "MUL_OP": "'*', '/' or '%'", "ARROW": "'=>'", "LBRACE": "'{'", "RBRACE": "'}'", "LSQB": "'['",
    "RSQB": "']'", "LPAR": "'('", "RPAR": "')'", "COMMA": "','", "COLON": "':'", "EQUAL": "'='",
    "DOT": "'.'", "MINUS": "'-'", "$END": "the end of the file",
}
_PUNCTUATION = frozenset({"LSQB", "RSQB", "COMMA", "LBRACE", "RBRACE", "EQUAL", "COLON"})


@cache
def _lark() -> Lark:
    folder = resources.files("crmcore.rules")
    grammar = folder.joinpath("grammar.lark").read_text() + "\n" + folder.joinpath("crm.lark").read_text()
    # keep_all_tokens: an expression's tree then holds its brackets, so the positions of its
    # first and last tokens give its exact span (tokens carry positions: no tree metadata needed)
    return Lark(grammar, parser="lalr", start="crm_file", maybe_placeholders=True, keep_all_tokens=True, cache=True)


@dataclass
class CrmDocument:
    """A parsed ``.crm`` file: its data (shaped as the YAML form's) and where each path stands."""

    source: SourceFile
    data: dict[str, Any] = field(default_factory=dict)
    places: dict[Path, int] = field(default_factory=dict)  # where each value starts
    keys: dict[Path, int] = field(default_factory=dict)  # where the name of a named value starts
    exprs: dict[Path, tuple[str, list[int]]] = field(default_factory=dict)  # text, file offset of each char

    def offset(self, path: Path, key: bool = False) -> int:
        if key and path in self.keys:
            return self.keys[path]
        while path and path not in self.places:
            path = path[:-1]
        return self.places.get(path, 0)

    def origin(self, path: Path, text: str) -> Origin:
        """Where the characters of the expression ``text`` at ``path`` stand in the file."""
        written = self.exprs.get(path)
        if written is not None and written[0] == text:
            return Origin(self.source, written[1], text)
        at = self.offset(path)
        return Origin(self.source, [at] * max(len(text), 1), text)

    def diagnostic(self, code: str, message: str, path: Path, key: bool = False) -> Diagnostic:
        return Diagnostic.at(code, message, self.source, self.offset(path, key))


MAX_SYNTAX_ERRORS = 20  # syntax errors reported for one file before giving up on it
# A declaration that starts a line: where parsing starts again after a syntax error.
_DECLARATION = re.compile(r"^(?:version|list|schema|desk|agent|score|route|trigger|target)\b", re.M)


def load_crm(source: SourceFile) -> tuple[CrmDocument | None, list[Diagnostic]]:
    """Parse a ``.crm`` file into its data and positions, with every syntax error found.

    After a syntax error the declaration it is in is blanked out (lengths and line breaks
    kept, so positions stay true) and the file is parsed again, so that each broken
    declaration is reported once and the rest of the file is still read and checked.
    """
    if len(source.text) > MAX_BYTES:
        return None, [Diagnostic.at(Code.CRM, f"file larger than {MAX_BYTES:,} characters", source, 0)]
    deepest, where = bracket_depth(source.text, opening="([{", closing=")]}", comments=True)
    if deepest > MAX_DEPTH:
        return None, [Diagnostic.at(Code.TOO_COMPLEX, f"brackets nested deeper than {MAX_DEPTH}", source, where)]
    text = source.text
    problems: list[Diagnostic] = []
    for _ in range(MAX_SYNTAX_ERRORS):
        try:
            tree = _lark().parse(text)
            break
        except UnexpectedInput as err:
            code, message, offset = _describe(err, text)
            start = _declaration_start(err, offset)
            line_start = text.rfind("\n", 0, offset) + 1
            if start < line_start and (offset >= len(text.rstrip()) or _DECLARATION.match(text, line_start)):
                message += f" (is the block of the {text[start:].split(maxsplit=1)[0]} at line {source.position(start)[0]} closed with '}}'?)"
            problems.append(Diagnostic.at(code, message, source, offset))
            text = _blank_declaration(text, start, offset)
    else:
        return None, problems
    reader = _Reader(source)
    try:
        reader.read(tree)
    except RecursionError:
        return None, [Diagnostic.at(Code.TOO_COMPLEX, f"nested deeper than {MAX_DEPTH}", source, 0)]
    return reader.doc, problems + reader.problems


def _blank_declaration(text: str, start: int, offset: int) -> str:
    """``text`` with the declaration from ``start`` that a syntax error at ``offset`` broke
    replaced by blanks, up to the next line that starts a declaration after the error."""
    end = next((m.start() for m in _DECLARATION.finditer(text, offset) if m.start() > start), len(text))
    if end <= start:  # nothing blanked yet: take at least the offending character, to make progress
        end = max(start, offset) + 1
    blank = "".join(ch if ch == "\n" else " " for ch in text[start:end])
    return text[:start] + blank + text[end:]


def _declaration_start(err: UnexpectedInput, offset: int) -> int:
    """Where the declaration being parsed when ``err`` happened starts: its keyword is the
    first token still on the parser's stack (finished declarations are trees there)."""
    parser = getattr(err, "interactive_parser", None)
    stack = parser.parser_state.value_stack if parser is not None else []
    first = next((item for item in stack if isinstance(item, Token)), None)
    return first.start_pos if first is not None and first.start_pos is not None else offset


_STRUCTURE_FIRST = ("ARROW", "LBRACE", "RBRACE", "ID", "TYPE", "EQUAL", "COLON")


def _expected(names: set[str]) -> str:
    """The terminals a parser could take, readable: the file's own syntax first, then the
    expression's, then keywords; at most eight."""
    first = [_READABLE[n] for n in _STRUCTURE_FIRST if n in names]
    readable = sorted({_READABLE[n] for n in names if n in _READABLE and n not in _STRUCTURE_FIRST and n != "$END"})
    keywords = sorted(repr(n.lower()) for n in names if n not in _READABLE and not n.startswith("__"))
    shown = (first + readable + keywords)[:8]
    if "$END" in names:
        shown.append(_READABLE["$END"])
    return ", ".join(shown) if shown else "something else"


def _accepted(err: UnexpectedInput) -> set[str]:
    """What the parser could have taken where it stopped (exact, unlike LALR's merged lookaheads)."""
    parser = getattr(err, "interactive_parser", None)
    if parser is not None:
        try:
            return set(parser.accepts())
        except Exception:  # pragma: no cover - lark internals; fall back to the table's view
            pass
    return set(getattr(err, "expected", None) or getattr(err, "allowed", None) or ())


def _code(accepted: set[str]) -> str:
    """E100 when only the expression can go on at this point, E306 when the file's syntax can."""
    structural = {n for n in accepted if n in _STRUCTURE_FIRST or n in _CRM_KEYWORDS or n == "$END"}
    return Code.CRM if structural or not accepted else Code.SYNTAX


_CRM_KEYWORDS = frozenset({
    "VERSION", "LIST", "SCHEMA", "DESK", "AGENT", "SCORE", "RULE", "WHEN", "BAND", "ROUTE", "BY", "REQUIRE",
    "TRIGGER", "ON", "PRIORITY", "TARGET", "PER", "FOR",
})


def _describe(err: UnexpectedInput, text: str) -> tuple[str, str, int]:
    """(code, message, offset) of a syntax error; E100 when it is inside an expression."""
    accepted = _accepted(err)
    code = _code(accepted)
    if isinstance(err, UnexpectedCharacters):
        at = err.pos_in_stream or 0
        ch = text[at] if at < len(text) else ""
        if ch in "\"'":
            return code, "unterminated string literal", at
        if ch in "&|":
            return code, f"'{ch}' is not an operator: use 'and' / 'or'", at
        return code, f"unexpected character {ch!r}; expected {_expected(accepted)}", at
    if isinstance(err, UnexpectedToken):
        tok = err.token
        if tok.type == "$END":
            return code, f"the file ends too early; expected {_expected(accepted)}", len(text)
        at = tok.start_pos if tok.start_pos is not None else 0
        if str(tok) == "=" and "COMPARE_OP" in accepted:
            return Code.SYNTAX, "'=' is not an operator: use '==' to compare", at
        if tok.type in {"COMPARE_OP", "IN", "MATCHES", "NOT"} and "AND" in accepted and "COMPARE_OP" not in accepted:
            return Code.SYNTAX, f"comparisons cannot be chained: '{tok}' after a comparison (use 'and')", at
        return code, f"unexpected {str(tok)!r}; expected {_expected(accepted)}", at
    if isinstance(err, UnexpectedEOF):
        return Code.CRM, "the file ends too early", len(text)
    return Code.CRM, str(err).splitlines()[0], 0  # pragma: no cover


def _kids(tree: Tree[Token]) -> list[Any]:
    """A node's children, typed loosely: the grammar, not the type checker, knows their shape."""
    return list(tree.children)


def _parts(tree: Tree[Token]) -> list[Any]:
    """A node's children without its punctuation (brackets, commas, braces)."""
    return [c for c in tree.children if not (isinstance(c, Token) and c.type in _PUNCTUATION)]


def _leaves(tree: Tree[Token] | Token) -> Iterator[Token]:
    if isinstance(tree, Token):
        yield tree
        return
    stack: list[Any] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, Token):
            yield node
        elif isinstance(node, Tree):
            stack.extend(reversed(node.children))


def name_text(token: Token) -> str:
    """An ID: a bare name as written, a quoted one with its escapes decoded."""
    text = str(token)
    return unescape(text[1:-1]) if text[:1] in "\"'" else text


class _Reader:
    """Walks the parse tree into a :class:`CrmDocument`, noting duplicates on the way."""

    def __init__(self, source: SourceFile) -> None:
        self.source = source
        self.doc = CrmDocument(source)
        self.problems: list[Diagnostic] = []

    def read(self, tree: Tree[Token]) -> None:
        for declaration in tree.children:
            if isinstance(declaration, Tree):
                getattr(self, declaration.data)(declaration)

    # ---- helpers ------------------------------------------------------------------------------

    def _place(self, path: Path, token: Token | Tree[Token], key: Token | None = None) -> None:
        self.doc.places[path] = _start(token)
        if key is not None:
            self.doc.keys[path] = _start(key)

    def _duplicate(self, what: str, first: Path, token: Token) -> None:
        line, _ = self.source.position(self.doc.keys.get(first, self.doc.places.get(first, 0)))
        self.problems.append(Diagnostic.at(
            Code.DUPLICATE, f"{what} is given twice (first at line {line})", self.source, _start(token)
        ))

    def _claim(self, mapping: dict[str, Any], path: Path, name: Token, what: str) -> str | None:
        """The name's text, when ``mapping`` does not hold it yet; else report a duplicate."""
        text = name_text(name)
        if text in mapping:
            self._duplicate(f"{what} '{text}'", (*path, text), name)
            return None
        self.doc.keys[(*path, text)] = _start(name)
        return text

    def _expr(self, path: Path, tree: Tree[Token] | Token) -> str:
        """The expression's text as written (comments left out) and the file offset of each char."""
        chars: list[str] = []
        offsets: list[int] = []
        end: int | None = None
        for token in _leaves(tree):
            start = _start(token)
            if end is not None:
                gap = self.source.text[end:start]
                comment = False
                for i, ch in enumerate(gap):
                    comment = (comment or ch == "#") and ch != "\n"
                    if not comment:
                        chars.append(ch)
                        offsets.append(end + i)
            chars.extend(str(token))
            offsets.extend(range(start, start + len(str(token))))
            end = token.end_pos if token.end_pos is not None else start + len(str(token))
        text = "".join(chars)
        self.doc.exprs[path] = (text, offsets)
        self.doc.places[path] = offsets[0] if offsets else 0
        return text

    def _value(self, node: Any, path: Path) -> Any:
        """A literal or setting value as the YAML form would hold it."""
        self.doc.places[path] = _start(node)
        if isinstance(node, Token):  # an ID
            return name_text(node)
        kind = node.data
        if kind == "signed_number":
            sign, number = _kids(node)
            text = ("-" if sign is not None else "") + str(number)
            return float(text) if "." in text else int(text)
        if kind == "duration_value":
            return str(node.children[0])
        if kind in ("true_value", "false_value", "null_value"):
            return {"true_value": True, "false_value": False, "null_value": None}[kind]
        if kind in ("literal_list", "values"):
            items = [c for c in _parts(node) if c is not None]
            values = [self._value(item, (*path, i)) for i, item in enumerate(items)]
            return values[0] if kind == "values" and len(values) == 1 else values
        if kind == "settings":
            return self._settings(node, path)
        raise AssertionError(f"unexpected value {kind}")  # pragma: no cover

    def _settings(self, tree: Tree[Token], path: Path) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for setting in _parts(tree):
            self._setting(found, setting, path)
        return found

    def _setting(self, found: dict[str, Any], setting: Tree[Token], path: Path) -> None:
        key, value_node = _kids(setting)
        name = self._claim(found, path, key, "setting")
        if name is None:
            return
        value = self._value(value_node, (*path, name))
        found[name] = [value] if name in LIST_SETTINGS and not isinstance(value, list) else value

    def _section(self, name: str, empty: Any) -> Any:
        return self.doc.data.setdefault(name, empty)

    # ---- declarations -------------------------------------------------------------------------

    def version_decl(self, tree: Tree[Token]) -> None:
        keyword, number = _kids(tree)
        if "version" in self.doc.data:
            self._duplicate("'version'", ("version",), keyword)
        self.doc.data["version"] = float(number) if "." in number else int(number)
        self._place(("version",), number, keyword)

    def list_decl(self, tree: Tree[Token]) -> None:
        _, name, _, values = _kids(tree)
        lists = self._section("lists", {})
        text = self._claim(lists, ("lists",), name, "list")
        if text is not None:
            lists[text] = self._value(values, ("lists", text))

    def schema_decl(self, tree: Tree[Token]) -> None:
        _, root, *fields = _parts(tree)
        schema = self._section("schema", {})
        root_name = self._claim(schema, ("schema",), root, "schema")
        if root_name is None:
            return
        self.doc.places[("schema", root_name)] = _start(root)
        block: dict[str, Any] = {}
        schema[root_name] = block
        for field_decl in fields:
            name, _, type_token, equals, default = _kids(field_decl)
            field_name = self._claim(block, ("schema", root_name), name, "schema field")
            if field_name is None:
                continue
            path = ("schema", root_name, field_name)
            self.doc.places[path] = self.doc.places[(*path, "type")] = _start(type_token)
            if equals is None:
                block[field_name] = name_text(type_token)
            else:
                block[field_name] = {"type": name_text(type_token), "default": self._value(default, (*path, "default"))}

    def desk_decl(self, tree: Tree[Token]) -> None:
        self._entity("desks", tree)

    def agent_decl(self, tree: Tree[Token]) -> None:
        self._entity("agents", tree)

    def _entity(self, section: str, tree: Tree[Token]) -> None:
        _, name, settings = _kids(tree)
        items = self._section(section, [])
        path: Path = (section, len(items))
        entry: dict[str, Any] = {"id": name_text(name)}
        self._place(path, name)
        self._place((*path, "id"), name, name)
        if settings is not None:
            for setting in _parts(settings):
                self._setting(entry, setting, path)
        items.append(entry)

    def score_decl(self, tree: Tree[Token]) -> None:
        _, name, *items = _parts(tree)
        scores = self._section("scores", {})
        score_name = self._claim(scores, ("scores",), name, "score")
        if score_name is None:
            return
        score: dict[str, Any] = {"rules": [], "bands": {}}
        scores[score_name] = score
        path: Path = ("scores", score_name)
        self._place(path, name)
        for item in items:
            if item.data == "score_rule":
                _, rule_name, _, when, _, points = _kids(item)
                rule_path = (*path, "rules", len(score["rules"]))
                rule = {"name": name_text(rule_name)}
                self._place(rule_path, item)
                self._place((*rule_path, "name"), rule_name, rule_name)
                if when is not None:
                    rule["when"] = self._expr((*rule_path, "when"), when)
                rule["points"] = self._expr((*rule_path, "points"), points)
                score["rules"].append(rule)
            else:
                _, band, op, threshold = _kids(item)
                if op is not None and str(op) != ">=":
                    self.problems.append(Diagnostic.at(
                        Code.STRUCTURE, f"a band is written 'band NAME >= NUMBER', not with '{op}'", self.source, _start(op)
                    ))
                band_name = self._claim(score["bands"], (*path, "bands"), band, "band")
                if band_name is not None:
                    band_path = (*path, "bands", band_name)
                    self._place(band_path, band)
                    score["bands"][band_name] = None if threshold is None else self._value(threshold, band_path)
        if not score["bands"]:
            del score["bands"]

    def route_decl(self, tree: Tree[Token]) -> None:
        _, stage, *rules = _parts(tree)
        routing = self._section("routing", {})
        stage_name = self._claim(routing, ("routing",), stage, "route")
        if stage_name is None:
            return
        routing[stage_name] = []
        path: Path = ("routing", stage_name)
        self._place(path, stage)
        for i, rule_tree in enumerate(rules):
            _, name, _, when, arrow, *clauses = _kids(rule_tree)
            rule_path = (*path, i)
            rule: dict[str, Any] = {"name": name_text(name)}
            self._place(rule_path, rule_tree)
            self._place((*rule_path, "name"), name, name)
            if when is not None:
                rule["when"] = self._expr((*rule_path, "when"), when)
            assign: dict[str, Any] = {}
            self._place((*rule_path, "assign"), arrow)
            for clause in clauses:
                keyword, value = _kids(clause)
                key = {"assign_agent": "agent", "assign_desk": "desk", "assign_strategy": "strategy", "assign_require": "require"}[clause.data]
                if key in assign:
                    self._duplicate(f"'{keyword}'", (*rule_path, "assign", key), keyword)
                    continue
                if key in ("agent", "require"):
                    assign[key] = self._expr((*rule_path, "assign", key), value)
                else:
                    assign[key] = name_text(value)
                    self._place((*rule_path, "assign", key), value)
                self.doc.keys[(*rule_path, "assign", key)] = _start(keyword)
            rule["assign"] = assign
            routing[stage_name].append(rule)

    def trigger_decl(self, tree: Tree[Token]) -> None:
        _, name, _, event, _, when, _, *items = _kids(tree)
        triggers = self._section("triggers", [])
        path: Path = ("triggers", len(triggers))
        trigger: dict[str, Any] = {"name": name_text(name)}
        self._place(path, name)
        self._place((*path, "name"), name, name)
        if event is not None:
            trigger["on"] = name_text(event)
            self._place((*path, "on"), event)
        if when is not None:
            trigger["when"] = self._expr((*path, "when"), when)
        for item in items:
            if not isinstance(item, Tree):
                continue  # the closing brace
            if item.data == "trigger_priority":
                keyword, priority = _kids(item)
                if "priority" in trigger:
                    self._duplicate("'priority'", (*path, "priority"), keyword)
                    continue
                trigger["priority"] = self._expr((*path, "priority"), priority)
                self.doc.keys[(*path, "priority")] = _start(keyword)
            else:
                self._setting(trigger, item, path)
        triggers.append(trigger)

    def target_decl(self, tree: Tree[Token]) -> None:
        _, metric, _, value, _, per, _, period, _, _, desk = _kids(tree)
        targets = self._section("targets", [])
        path: Path = ("targets", len(targets))
        target: dict[str, Any] = {"metric": name_text(metric)}
        self._place(path, metric)
        self._place((*path, "metric"), metric)
        target["value"] = self._value(value, (*path, "value"))
        for key, token in (("per", per), ("period", period), ("desk", desk)):
            if token is not None:
                target[key] = name_text(token)
                self._place((*path, key), token)
        targets.append(target)


def _start(node: Token | Tree[Token]) -> int:
    if isinstance(node, Token):
        return node.start_pos or 0
    first = next(_leaves(node), None)
    return (first.start_pos or 0) if first is not None else 0
