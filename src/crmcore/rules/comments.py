"""The comments of a rule file, carried across ``crmcore fmt``.

``fmt`` prints the model, which has no place for comments, so they are carried beside it:
each comment of the input is tied to an *anchor* — the list, schema field, desk, agent,
score, score rule, band, route, routing rule, trigger or target it stands above or in — and
printed on its own line above that anchor in the output, at the anchor's indentation:

- a comment above an anchor's first line (blank lines between allowed) is that anchor's;
- a comment after code is the first anchor's begun on its line, else the innermost's
  begun before it;
- a comment inside an anchor's lines is the innermost anchor's begun there;
- a comment before every anchor is the file's head when a blank line parts it from them
  (or when code that is no anchor comes first, as YAML's ``version``); one after all code
  is the file's end.

Blank lines are not kept. Printed so, every comment is found again at the same anchor:
formatting the output again gives the same text.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterator
from typing import Any

import yaml

from crmcore.rules.crmsource import CrmDocument
from crmcore.rules.diagnostics import SourceFile
from crmcore.rules.loader import RuleDocument
from crmcore.rules.model import RuleFile
from crmcore.rules.parser import string_end
from crmcore.rules.yamlsource import YamlDocument

Path = tuple[str | int, ...]
HEAD: Path = ("<head>",)
TAIL: Path = ("<tail>",)


def anchors(model: RuleFile) -> list[Path]:
    """The paths comments can be tied to, in the order ``fmt`` prints them (both syntaxes)."""
    found: list[Path] = [HEAD]

    def section(name: str, keys: Any) -> None:
        keys = list(keys)
        if keys:
            found.extend([(name,), *((name, key) for key in keys)])

    section("lists", model.lists)
    if model.schema_.client:
        found.extend([("schema",), ("schema", "client"), *(("schema", "client", name) for name in model.schema_.client)])
    section("desks", range(len(model.desks)))
    section("agents", range(len(model.agents)))
    if model.scores:
        found.append(("scores",))
        for name, score in model.scores.items():
            found.append(("scores", name))
            found.extend(("scores", name, "rules", i) for i in range(len(score.rules)))
            found.extend(("scores", name, "bands", band) for band in score.bands)
    stages = [stage for stage in ("registration", "ftd") if getattr(model.routing, stage)]
    if stages:
        found.append(("routing",))
        for stage in stages:
            found.append(("routing", stage))
            found.extend(("routing", stage, i) for i in range(len(getattr(model.routing, stage))))
    section("triggers", range(len(model.triggers)))
    section("targets", range(len(model.targets)))
    found.append(TAIL)
    return found


def _offset(doc: RuleDocument, path: Path) -> int | None:
    """Where the anchor at ``path`` begins in ``doc`` (its key, for a mapping's entry), if there."""
    if isinstance(doc, CrmDocument):
        return doc.keys.get(path, doc.places.get(path))
    assert isinstance(doc, YamlDocument)
    node = doc.nodes.get((*path, "<key>")) or doc.nodes.get(path)
    return None if node is None else int(node.start_mark.index)


def _comments(source: SourceFile, doc: RuleDocument) -> Iterator[tuple[int, bool]]:
    """Each comment's offset, and whether code comes before it on its line."""
    text = source.text
    if isinstance(doc, CrmDocument):
        starts = _crm_comments(text)
    else:
        assert isinstance(doc, YamlDocument)
        spans = sorted((n.start_mark.index, n.end_mark.index) for n in doc.nodes.values() if isinstance(n, yaml.ScalarNode))
        lows = [low for low, _ in spans]
        starts = []
        at = text.find("#")
        while at >= 0:
            k = bisect_right(lows, at) - 1
            inside = k >= 0 and at < spans[k][1]
            if not inside and (at == 0 or text[at - 1] in " \t\n"):
                starts.append(at)
                at = text.find("\n", at)
                if at < 0:
                    break
            at = text.find("#", at + 1)
    for at in starts:
        line_start = text.rfind("\n", 0, at) + 1
        yield at, bool(text[line_start:at].strip())


def _crm_comments(text: str) -> list[int]:
    """Where ``#`` comments begin in a ``.crm`` file (strings, which end at their line, skipped)."""
    starts = []
    i, end = 0, len(text)
    while i < end:
        ch = text[i]
        if ch in "\"'":
            i = string_end(text, i)
        elif ch == "#":
            starts.append(i)
            while i < end and text[i] != "\n":
                i += 1
        i += 1
    return starts


def _lines(text: str) -> Callable[[int], int]:
    """The line (from 0) of an offset in ``text``."""
    starts = [0, *(i + 1 for i, ch in enumerate(text) if ch == "\n")]
    return lambda offset: bisect_right(starts, offset) - 1


def gather(source: SourceFile, doc: RuleDocument, model: RuleFile) -> dict[Path, list[str]]:
    """The comments of ``source`` (``#`` to the end of the line), by the anchor each belongs to."""
    text = source.text
    lines = text.split("\n")
    line_of = _lines(text)
    begun: dict[int, list[Path]] = {}  # line -> the anchors that begin on it, in order
    for path in anchors(model):
        offset = _offset(doc, path)
        if offset is not None:
            begun.setdefault(line_of(offset), []).append(path)
    begun_lines = sorted(begun)
    found: list[tuple[int, bool, str]] = []
    for at, after_code in _comments(source, doc):
        found.append((line_of(at), after_code, text[at:].split("\n", 1)[0].rstrip()))
    comment_lines = {line for line, after_code, _ in found if not after_code}
    code_after: list[int | None] = [None] * (len(lines) + 1)  # the first line of code after each line
    for n in range(len(lines) - 1, 0, -1):
        code_after[n - 1] = n if lines[n].strip() and n not in comment_lines else code_after[n]

    def innermost(line: int) -> Path:
        k = bisect_right(begun_lines, line) - 1
        return begun[begun_lines[k]][-1] if k >= 0 else HEAD

    tied: dict[Path, list[str]] = {}
    for line, after_code, comment in found:
        if after_code:  # the first anchor begun on its line, else the one it is in
            anchor = begun[line][0] if line in begun else innermost(line)
        else:
            code = code_after[line]
            if code is None:
                anchor = TAIL
            elif code not in begun:
                anchor = innermost(code)
            elif innermost(line) == HEAD and any(not lines[n].strip() for n in range(line + 1, code)):
                anchor = HEAD  # the file's own comments, apart from what follows
            else:
                anchor = begun[code][0]
        tied.setdefault(anchor, []).append(comment)
    return tied


def place(text: str, doc: RuleDocument, model: RuleFile, comments: dict[Path, list[str]]) -> str:
    """``text`` (a file printed from ``model``, read as ``doc``) with ``comments`` on lines of
    their own above their anchors; an anchor the text does not hold (a section heading that
    only YAML has) passes its comments to the next one that it does."""
    if not comments:
        return text
    lines = text.split("\n")
    line_of = _lines(text)
    above: dict[int, list[str]] = {}
    head: list[str] = []
    waiting: list[str] = []
    for path in anchors(model):
        waiting.extend(comments.get(path, ()))
        if path == HEAD:
            head, waiting = waiting, []
            continue
        if path == TAIL or not waiting:
            continue
        offset = _offset(doc, path)
        if offset is not None:
            above.setdefault(line_of(offset), []).extend(waiting)
            waiting = []
    printed: list[str] = [*head, ""] if head and text.strip() else list(head)
    for number, line in enumerate(lines):
        indent = line[: len(line) - len(line.lstrip(" "))]
        printed.extend(indent + comment for comment in above.get(number, ()))
        printed.append(line)
    if waiting:  # the end's, and any whose anchor the text does not hold
        while printed and not printed[-1]:
            printed.pop()
        printed.extend(["", *waiting, ""] if printed else [*waiting, ""])
    return "\n".join(printed)
