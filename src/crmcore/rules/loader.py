"""Rule files in, a checked and compiled :class:`RuleSet` out (or every diagnostic at once).

files -> YAML with positions -> pydantic structure -> merge (duplicates) -> type-check every
expression in its position's environment -> references and score order -> RuleSet.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError

from crmcore.rules import ast
from crmcore.rules.checker import as_condition, as_number, check
from crmcore.rules.crmsource import load_crm
from crmcore.rules.diagnostics import Code, Collector, Diagnostic, Origin, RuleError, SourceFile
from crmcore.rules.model import RuleFile
from crmcore.rules.optimizer import constant_value
from crmcore.rules.parser import KEYWORDS, parse
from crmcore.rules.ruleset import Expr, RuleSet
from crmcore.rules.schema import (
    CLIENT_DEFAULTS,
    CLIENT_FIELDS,
    EVENT_FIELDS,
    ROOTS,
    WINDOWS,
    Env,
    client_fields,
)
from crmcore.rules.types import NULL, NUMBER, STRING, Type, list_of, parse_type
from crmcore.rules.unparse import unparse
from crmcore.rules.values import to_stamp
from crmcore.rules.yamlsource import Path as YPath
from crmcore.rules.yamlsource import load_yaml

RULE_SUFFIXES = (".yaml", ".yml", ".crm")
RESERVED = frozenset(ROOTS) | KEYWORDS | frozenset(source for source, _ in WINDOWS)
TEST_FILE = re.compile(r"_test\.ya?ml$")


def rule_files(paths: Iterable[str | Path]) -> tuple[list[Path], list[Diagnostic]]:
    """The rule files named by ``paths`` (folders are searched; rule tests are left out)."""
    found: list[Path] = []
    seen: set[Path] = set()
    problems: list[Diagnostic] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(sorted(
                p for p in path.rglob("*")
                if p.is_file() and p.suffix in RULE_SUFFIXES and not TEST_FILE.search(p.name)
            ))
        elif path.is_file():
            found.append(path)
        else:
            problems.append(Diagnostic(Code.FILE, f"no such file or folder: {path}", str(path), 1, 1))
    unique = []
    for path in found:  # a file named twice (a folder and a file in it) is loaded once
        if path.resolve() not in seen:
            seen.add(path.resolve())
            unique.append(path)
    return unique, problems


class RuleDocument(Protocol):
    """One parsed rule file, YAML or ``.crm``: its data, and where each path stands in it."""

    @property
    def source(self) -> SourceFile: ...

    @property
    def data(self) -> Any: ...

    def offset(self, path: YPath, key: bool = False) -> int: ...

    def origin(self, path: YPath, text: str) -> Origin: ...

    def diagnostic(self, code: str, message: str, path: YPath, key: bool = False) -> Diagnostic: ...


@dataclass
class FilePart:
    """One loaded file: its structure and where each of its values stands."""

    model: RuleFile
    doc: RuleDocument


def load_rules(paths: str | Path | Iterable[str | Path]) -> RuleSet:
    """Load, check and compile rule files or folders; raise :class:`RuleError` with every problem."""
    if isinstance(paths, str | Path):
        paths = [paths]
    files, file_problems = rule_files(paths)
    problems = Collector()
    problems.extend(file_problems)
    if not files and not file_problems:
        problems.add(Diagnostic(Code.FILE, "no rule files (*.yaml, *.yml, *.crm) found", ", ".join(map(str, paths)), 1, 1))
    sources = []
    for path in files:
        try:
            sources.append(SourceFile(str(path), path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as err:
            problems.add(Diagnostic(Code.FILE, f"cannot read: {err}", str(path), 1, 1))
    return load_sources(sources, problems)


def loads(text: str, path: str = "<rules>") -> RuleSet:
    """Load a rule set from text (tests, what-if screens): YAML, or ``.crm`` when ``path`` ends in .crm."""
    return load_sources([SourceFile(path, text)], Collector())


def load_sources(sources: list[SourceFile], problems: Collector) -> RuleSet:
    parts: list[FilePart] = []
    for source in sources:
        part = load_part(source, problems)
        if part is not None:
            parts.append(part)
    return _Builder(parts, problems).build()


def read_document(source: SourceFile) -> tuple[RuleDocument | None, list[Diagnostic]]:
    """Parse one rule file by its suffix: ``.crm`` or YAML."""
    if source.path.endswith(".crm"):
        return load_crm(source)
    return load_yaml(source)


def load_part(source: SourceFile, problems: Collector) -> FilePart | None:
    """One file's structure (the pydantic model) and its document; None when it has none."""
    doc, syntax_problems = read_document(source)
    problems.extend(syntax_problems)
    if doc is None:
        return None
    data = doc.data if doc.data is not None else {}
    if not isinstance(data, Mapping):
        problems.add(doc.diagnostic(Code.STRUCTURE, "a rule file is a mapping (version, lists, scores, routing, ...)", ()))
        return None
    data = copy.deepcopy(dict(data))
    for _ in range(MAX_SALVAGE):
        try:
            return FilePart(RuleFile.model_validate(data), doc)
        except ValidationError as err:
            errors = err.errors()
            for error in errors:
                problems.add(_structure_diagnostic(doc, error))
            # drop the offending keys and try again, so that the rest of the file is still checked
            if not all(_drop(data, _clean_loc(error["loc"])) for error in errors):
                return None
    return None


MAX_SALVAGE = 5


def _clean_loc(loc: tuple[Any, ...]) -> YPath:
    """A pydantic error location as a path in the document (union/validator tags removed)."""
    return tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or ("-" in p and p.startswith("function")))))


def _drop(data: Any, path: YPath) -> bool:
    """Delete an optional key at ``path``; False when there is nothing that may be dropped."""
    if len(path) < 2:
        return False
    *parents, last = path
    target = data
    for part in parents:
        try:
            target = target[part]
        except (KeyError, IndexError, TypeError):
            return False
    if isinstance(target, dict) and last in target and last not in ("name", "id", "points", "assign", "rules", "metric"):
        del target[last]
        return True
    return False


def _structure_diagnostic(doc: RuleDocument, error: Any) -> Diagnostic:
    path = _clean_loc(error["loc"])
    kind = error["type"]
    where = ".".join(str(p) for p in path) or "the file"
    if kind == "extra_forbidden":
        return doc.diagnostic(Code.STRUCTURE, f"unknown key '{path[-1]}' in {'.'.join(map(str, path[:-1])) or 'the file'}", path, key=True)
    if kind == "missing":
        return doc.diagnostic(Code.STRUCTURE, f"missing key '{path[-1]}'", path[:-1])
    message = error["msg"].removeprefix("Value error, ")
    if kind in ("literal_error", "enum"):
        allowed = error.get("ctx", {}).get("expected")
        message = f"must be one of {allowed}" if allowed else message
    return doc.diagnostic(Code.STRUCTURE, f"{where}: {message}", path)


class _Builder:
    """Merges the files' parts, checks every expression and builds the RuleSet."""

    def __init__(self, parts: list[FilePart], problems: Collector):
        self.parts = parts
        self.problems = problems
        self.first_seen: dict[tuple[str, str], tuple[RuleDocument, YPath]] = {}
        # one load often repeats an expression (`points: 20`): parse and check each text once per Env
        self.parsed: dict[str, ast.Node] = {}
        self.checked: dict[tuple[str, int], ast.Node] = {}
        self.exprs_seen: dict[tuple[str, ...], Expr] = {}
        self.later_warnings: list[Diagnostic] = []  # found while checking, reported with the others

    # ---- merge --------------------------------------------------------------------------------

    def _unique(self, kind: str, name: str, doc: RuleDocument, path: YPath, key: bool = False) -> bool:
        seen = self.first_seen.get((kind, name))
        if seen is None:
            self.first_seen[(kind, name)] = (doc, path)
            return True
        first_doc, first_path = seen
        line, _ = first_doc.source.position(first_doc.offset(first_path, key))
        self.problems.add(doc.diagnostic(
            Code.DUPLICATE, f"{kind} '{name}' is defined twice (first at {first_doc.source.path}:{line})", path, key
        ))
        return False

    def _merge(self) -> RuleFile:
        merged: dict[str, Any] = {
            "lists": {}, "schema": {"client": {}}, "desks": [], "agents": [], "scores": {},
            "routing": {"registration": [], "ftd": []}, "triggers": [], "targets": [],
        }
        self.where: dict[tuple[str, ...], tuple[RuleDocument, YPath]] = {}
        for part in self.parts:
            model, doc = part.model, part.doc
            for name, values in model.lists.items():
                if name in RESERVED:
                    self.problems.add(doc.diagnostic(Code.DUPLICATE, f"'{name}' is reserved (a root or keyword of the language)", ("lists", name), key=True))
                elif self._unique("list", name, doc, ("lists", name), key=True):
                    merged["lists"][name] = values
            for name, spec in model.schema_.client.items():
                if name in CLIENT_FIELDS:
                    self.problems.add(doc.diagnostic(Code.DUPLICATE, f"'{name}' is a built-in client field", ("schema", "client", name), key=True))
                elif name in KEYWORDS:
                    self.problems.add(doc.diagnostic(Code.DUPLICATE, f"'{name}' is a keyword of the language", ("schema", "client", name), key=True))
                elif self._unique("schema field", name, doc, ("schema", "client", name), key=True):
                    merged["schema"]["client"][name] = spec
                    self.where[("schema", name)] = (doc, ("schema", "client", name))
            for i, desk in enumerate(model.desks):
                if self._unique("desk", desk.id, doc, ("desks", i)):
                    merged["desks"].append(desk)
                    self.where[("desk", desk.id)] = (doc, ("desks", i))
            for i, agent in enumerate(model.agents):
                if self._unique("agent", agent.id, doc, ("agents", i)):
                    merged["agents"].append(agent)
                    self.where[("agent", agent.id)] = (doc, ("agents", i))
            for name, score in model.scores.items():
                if self._unique("score", name, doc, ("scores", name), key=True):
                    merged["scores"][name] = score
                    self.where[("score", name)] = (doc, ("scores", name))
            for stage in ("registration", "ftd"):
                for i, rule in enumerate(getattr(model.routing, stage)):
                    if self._unique(f"{stage} routing rule", rule.name, doc, ("routing", stage, i)):
                        merged["routing"][stage].append(rule)
                        self.where[("route", stage, rule.name)] = (doc, ("routing", stage, i))
            for i, trigger in enumerate(model.triggers):
                if self._unique("trigger", trigger.name, doc, ("triggers", i)):
                    merged["triggers"].append(trigger)
                    self.where[("trigger", trigger.name)] = (doc, ("triggers", i))
            for i, target in enumerate(model.targets):
                merged["targets"].append(target)
                self.where[("target", str(len(merged["targets"]) - 1))] = (doc, ("targets", i))
        return RuleFile.model_validate(merged)

    # ---- environment --------------------------------------------------------------------------

    def _list_types(self, document: RuleFile) -> dict[str, Type]:
        types: dict[str, Type] = {}
        for name, values in document.lists.items():
            bases = {"string" if isinstance(v, str) else "int" if isinstance(v, int) else "number" for v in values}
            if not values:
                types[name] = list_of(NULL)
            elif bases == {"string"}:
                types[name] = list_of(STRING)
            elif bases <= {"int", "number"}:
                types[name] = list_of(Type("int") if bases == {"int"} else NUMBER)
            else:
                doc, path = self._first("list", name)
                self.problems.add(doc.diagnostic(Code.TYPE_MISMATCH, f"list '{name}' mixes strings and numbers", path))
                types[name] = list_of(STRING)
        return types

    def _first(self, kind: str, name: str) -> tuple[RuleDocument, YPath]:
        return self.first_seen[(kind, name)]

    def _schema(self, document: RuleFile) -> tuple[dict[str, Type], dict[str, Any]]:
        fields: dict[str, Type] = {}
        defaults: dict[str, Any] = dict(CLIENT_DEFAULTS)
        for name, spec in document.schema_.client.items():
            doc, path = self.where[("schema", name)]
            text = spec if isinstance(spec, str) else spec.type
            try:
                fields[name] = parse_type(text)
            except ValueError as err:
                self.problems.add(doc.diagnostic(Code.STRUCTURE, str(err), path))
                continue
            if not isinstance(spec, str) and spec.default is not None:
                default = _default_value(spec.default, fields[name])
                if default is None:
                    self.problems.add(doc.diagnostic(Code.TYPE_MISMATCH, f"default {spec.default!r} is not a {fields[name]}", (*path, "default")))
                defaults[name] = default
        return fields, defaults

    # ---- expressions --------------------------------------------------------------------------

    def _expr(self, doc: RuleDocument, path: YPath, text: str, env: Env, role: str = "value") -> Expr | None:
        origin = doc.origin(path, text)
        node = self.parsed.get(text)
        if node is None:
            try:
                node = parse(text, origin)
            except RuleError as err:
                self.problems.extend(err.diagnostics)
                return None
            self.parsed[text] = node
        before = len(self.problems.diagnostics)
        typed = self.checked.get((text, id(env)))
        if typed is None:
            typed = check(node, env, origin, self.problems)
            if len(self.problems.diagnostics) == before:
                self.checked[(text, id(env))] = typed
        if role == "condition":
            as_condition(typed, origin, self.problems)
        elif role == "number":
            as_number(typed, origin, self.problems, str(path[-1]))
        if len(self.problems.diagnostics) > before:
            return None
        return Expr(text=text, canonical=unparse(node), node=typed, origin=origin)

    def build(self) -> RuleSet:
        document = self._merge()
        list_types = self._list_types(document)
        extra_fields, defaults = self._schema(document)
        bands = {name: tuple(score.bands) for name, score in document.scores.items()}
        env = Env(client=client_fields(extra_fields), lists=list_types, bands=bands)
        exprs: dict[tuple[str, ...], Expr] = {}
        self._check_scores(document, env, exprs)
        self._check_routing(document, env, exprs)
        self._check_triggers(document, env, exprs)
        self.exprs_seen = exprs
        self._check_references(document)
        order = self._score_order(document, exprs)
        self.problems.raise_if_errors()
        warnings = self._warnings(document)
        return RuleSet(
            document=document,
            canonical=_canonical(document, exprs),
            exprs=exprs,
            lists={name: tuple(values) for name, values in document.lists.items()},
            client_types=env.client,
            defaults=defaults,
            score_order=order,
            warnings=warnings,
        )

    def _check_scores(self, document: RuleFile, env: Env, exprs: dict[tuple[str, ...], Expr]) -> None:
        for name, score in document.scores.items():
            doc, path = self.where[("score", name)]
            seen: set[str] = set()
            for i, rule in enumerate(score.rules):
                rule_path = (*path, "rules", i)
                if rule.name in seen:
                    self.problems.add(doc.diagnostic(Code.DUPLICATE, f"score '{name}' has two rules named '{rule.name}'", (*rule_path, "name")))
                seen.add(rule.name)
                for key, role in (("when", "condition"), ("points", "number")):
                    expr = self._expr(doc, (*rule_path, key), getattr(rule, key), env, role)
                    if expr is not None:
                        exprs[("score", name, rule.name, key)] = expr
            self._check_bands(name, score.bands, doc, path)

    def _check_bands(self, score: str, bands: Mapping[str, float | None], doc: RuleDocument, path: YPath) -> None:
        thresholds = list(bands.values())
        for i, (band, threshold) in enumerate(bands.items()):
            last = i == len(thresholds) - 1
            if threshold is None and not last:
                self.problems.add(doc.diagnostic(Code.STRUCTURE, f"band '{band}' needs a threshold (only the last band may omit it)", (*path, "bands", band)))
            if i > 0 and threshold is not None and thresholds[i - 1] is not None and threshold >= thresholds[i - 1]:  # type: ignore[operator]
                self.problems.add(doc.diagnostic(Code.STRUCTURE, f"bands of '{score}' must go from the highest threshold down: '{band}' ({threshold}) is not below the band before it", (*path, "bands", band)))

    def _check_routing(self, document: RuleFile, env: Env, exprs: dict[tuple[str, ...], Expr]) -> None:
        agent_env = env.with_agent()
        for stage in ("registration", "ftd"):
            for rule in getattr(document.routing, stage):
                doc, path = self.where[("route", stage, rule.name)]
                when = self._expr(doc, (*path, "when"), rule.when, env, "condition")
                if when is not None:
                    exprs[("route", stage, rule.name, "when")] = when
                assign = rule.assign
                if (assign.agent is None) == (assign.desk is None):
                    self.problems.add(doc.diagnostic(Code.STRUCTURE, "assign needs exactly one of 'agent' (an expression) or 'desk'", (*path, "assign")))
                if assign.agent is not None:
                    agent = self._expr(doc, (*path, "assign", "agent"), assign.agent, env)
                    if agent is not None and agent.node.type is not None and agent.node.type.base not in ("string", "null", "error"):
                        self.problems.add(doc.diagnostic(Code.TYPE_MISMATCH, f"assign.agent must give an agent id (a string), got {agent.node.type}", (*path, "assign", "agent")))
                    elif agent is not None:
                        exprs[("route", stage, rule.name, "agent")] = agent
                    if assign.strategy is not None or assign.require is not None:
                        self.problems.add(doc.diagnostic(Code.STRUCTURE, "'strategy' and 'require' go with 'desk', not with 'agent'", (*path, "assign")))
                if assign.require is not None:
                    require = self._expr(doc, (*path, "assign", "require"), assign.require, agent_env, "condition")
                    if require is not None:
                        exprs[("route", stage, rule.name, "require")] = require

    def _check_triggers(self, document: RuleFile, env: Env, exprs: dict[tuple[str, ...], Expr]) -> None:
        event_envs = {event: env.with_event(event, fields) for event, fields in EVENT_FIELDS.items()}
        for trigger in document.triggers:
            doc, path = self.where[("trigger", trigger.name)]
            trigger_env = env if trigger.on is None else event_envs[trigger.on]
            when = self._expr(doc, (*path, "when"), trigger.when, trigger_env, "condition")
            if when is not None:
                exprs[("trigger", trigger.name, "when")] = when
            if trigger.priority is not None:
                priority = self._expr(doc, (*path, "priority"), trigger.priority, trigger_env, "number")
                if priority is not None:
                    exprs[("trigger", trigger.name, "priority")] = priority

    def _check_references(self, document: RuleFile) -> None:
        desks = {desk.id for desk in document.desks}
        agents = {agent.id: agent for agent in document.agents}

        def unknown_desk(doc: RuleDocument, where: str, desk: str, path: YPath) -> None:
            if desks:  # the files declare the desks: another name is a mistake
                self.problems.add(doc.diagnostic(Code.REFERENCE, f"{where}: unknown desk '{desk}'{_known(desks)}", path))
            else:  # they declare none: the host's desks (no SLA), named but not checked
                self.later_warnings.append(doc.diagnostic(
                    Code.UNDECLARED_DESK,
                    f"{where}: desk '{desk}' is not declared (the rule files declare no desks): "
                    "declare it under desks: to give it an SLA and have its name checked",
                    path,
                ))

        for agent in document.agents:
            doc, path = self.where[("agent", agent.id)]
            if agent.desk not in desks:
                unknown_desk(doc, f"agent '{agent.id}'", agent.desk, (*path, "desk"))
            if agent.manager is not None:
                manager = agents.get(agent.manager)
                if manager is None:
                    self.problems.add(doc.diagnostic(Code.REFERENCE, f"agent '{agent.id}': unknown manager '{agent.manager}'", (*path, "manager")))
                elif manager.role == "agent":
                    self.problems.add(doc.diagnostic(Code.REFERENCE, f"agent '{agent.id}': '{agent.manager}' is not a manager (role agent)", (*path, "manager")))
        for stage in ("registration", "ftd"):
            for rule in getattr(document.routing, stage):
                doc, path = self.where[("route", stage, rule.name)]
                agent_expr = self.exprs_seen.get(("route", stage, rule.name, "agent"))
                if agent_expr is not None and isinstance(agent_expr.node, ast.Literal) and agent_expr.node.value not in agents:
                    # a warning: agents may come from the host's store (agent_updated); an agent
                    # unknown when a client registers makes the rule fall through (SPEC 2)
                    self.later_warnings.append(doc.diagnostic(
                        Code.UNKNOWN_AGENT,
                        f"routing rule '{rule.name}': agent '{agent_expr.node.value}' is not in the rule files: "
                        "the rule falls through unless the store knows them (agent_updated)",
                        (*path, "assign", "agent"),
                    ))
                if rule.assign.desk is not None and rule.assign.desk not in desks:
                    unknown_desk(doc, f"routing rule '{rule.name}'", rule.assign.desk, (*path, "assign", "desk"))
        for i, target in enumerate(document.targets):
            doc, path = self.where[("target", str(i))]
            if target.desk is not None and target.desk not in desks:
                unknown_desk(doc, "target", target.desk, (*path, "desk"))

    def _score_order(self, document: RuleFile, exprs: Mapping[tuple[str, ...], Expr]) -> tuple[str, ...]:
        """Scores in an order where each comes after the scores its rules read."""
        needs: dict[str, dict[str, Expr]] = {name: {} for name in document.scores}
        for key, expr in exprs.items():
            if key[0] != "score":
                continue
            for node in expr.node.walk():
                if isinstance(node, ast.Name) and node.parts[0] in ("score", "band") and len(node.parts) == 2:
                    needs[key[1]].setdefault(node.parts[1], expr)
        order: list[str] = []
        state: dict[str, int] = {}

        def visit(name: str, trail: tuple[str, ...]) -> None:
            if state.get(name) == 2:
                return
            if state.get(name) == 1:
                expr = needs[trail[-1]][name]
                cycle = " -> ".join((*trail[trail.index(name):], name))
                self.problems.error_at(Code.CYCLE, f"scores depend on each other: {cycle}", expr.origin, 0)
                return
            state[name] = 1
            for dependency in needs.get(name, {}):
                if dependency in needs:
                    visit(dependency, (*trail, name))
            state[name] = 2
            order.append(name)

        for name in document.scores:
            visit(name, ())
        return tuple(order)

    def _warnings(self, document: RuleFile) -> list[Diagnostic]:
        """W501 for each literal agent of a routing rule the rule files do not define and W502
        for each desk named where the files declare none (both found by
        ``_check_references``); W500 for each routing stage whose last rule is not
        ``when: true``: a client can match none of them (unrouted, admins notified). An empty
        stage warns of nothing: no registration routing is a choice, no FTD routing means no
        hand-over."""
        found = list(self.later_warnings)
        for stage in ("registration", "ftd"):
            rules = getattr(document.routing, stage)
            if not rules:
                continue
            last = self.exprs_seen.get(("route", stage, rules[-1].name, "when"))
            if last is not None and constant_value(last.node) == (True, True):
                continue
            doc, path = self.where[("route", stage, rules[-1].name)]
            found.append(doc.diagnostic(
                Code.NO_FALLBACK,
                f"routing.{stage} can leave a client unmatched (unrouted); end it with a rule 'when: true'",
                path,
            ))
        warnings = [replace(diagnostic, severity="warning") for diagnostic in found]
        for warning in warnings:
            self.problems.add(warning)
        return warnings


def _known(names: Iterable[str]) -> str:
    return f" (known: {', '.join(sorted(names))})"


def _default_value(value: Any, type_: Type) -> Any:
    """A schema default as the rules will see it, or None when it does not fit the type."""
    base = type_.base
    if base == "bool":
        return value if isinstance(value, bool) else None
    if base == "int":
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    if base == "number":
        return value if isinstance(value, int | float) and not isinstance(value, bool) else None
    if base == "string":
        return value if isinstance(value, str) else None
    if base == "timestamp":
        try:
            return value if to_stamp(value) is not None else None
        except (TypeError, ValueError, OverflowError):
            return None
    if base == "list" and isinstance(value, list) and type_.elem is not None:
        items = [_default_value(item, type_.elem) for item in value]
        return tuple(items) if all(item is not None for item in items) else None
    return None  # durations have no default: write the duration in the rule


def _canonical(document: RuleFile, exprs: Mapping[tuple[str, ...], Expr]) -> str:
    """The rule set as canonical JSON: expressions in canonical text, band order kept."""
    data = document.model_dump(mode="json", by_alias=True)
    for name, score in data["scores"].items():
        for rule in score["rules"]:
            for key in ("when", "points"):
                expr = exprs.get(("score", name, rule["name"], key))
                rule[key] = expr.canonical if expr else rule[key]
        score["bands"] = [[band, threshold] for band, threshold in score["bands"].items()]
    for stage in ("registration", "ftd"):
        for rule in data["routing"][stage]:
            for key, where in (("when", rule), ("agent", rule["assign"]), ("require", rule["assign"])):
                expr = exprs.get(("route", stage, rule["name"], key))
                if expr is not None:
                    where[key] = expr.canonical
    for trigger in data["triggers"]:
        for key in ("when", "priority"):
            expr = exprs.get(("trigger", trigger["name"], key))
            if expr is not None:
                trigger[key] = expr.canonical
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
