"""``crmcore fmt``: one rule file, YAML or ``.crm``, printed in either syntax.

A file is read into the rule-file model (syntax and structure are checked, each
expression is parsed) and printed from the model: expressions in their canonical
text, values equal to their default left out, names quoted only where they must be.
So the output is canonical (formatting it again gives the same text) and lossless:
both forms load into the same model, with the same version. Comments are carried
beside the model (:mod:`crmcore.rules.comments`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from os import PathLike
from pathlib import Path as FsPath
from pathlib import PurePath
from typing import Any

import yaml
from pydantic import BaseModel

from crmcore.rules import comments
from crmcore.rules.crmsource import BARE_DURATION, BARE_NAME, KEYWORDS
from crmcore.rules.diagnostics import Code, Collector, CrmError, Diagnostic, RuleError, SourceFile
from crmcore.rules.loader import load_part, load_sources, read_document, rule_files
from crmcore.rules.model import Agent, Desk, RuleFile, Target, Trigger
from crmcore.rules.parser import parse
from crmcore.rules.unparse import number_text, string_text, unparse

Path = tuple[str | int, ...]
SYNTAXES = ("crm", "yaml")
SUFFIXES = {"crm": ".crm", "yaml": ".yaml"}


class LossError(CrmError):
    """A conversion that would change the rule set (a bug in crmcore: please report it)."""


def convert(source: SourceFile, to: str) -> str:
    """``source`` printed in the syntax ``to`` (``crm`` or ``yaml``); raises :class:`RuleError`."""
    if to not in SYNTAXES:
        raise ValueError(f"unknown syntax {to!r} (one of {', '.join(SYNTAXES)})")
    problems = Collector()
    part = load_part(source, problems)
    problems.raise_if_errors()
    assert part is not None
    texts: dict[Path, str] = {}
    for path, text in expressions(part.model):
        try:
            texts[path] = unparse(parse(text, part.doc.origin(path, text)))
        except RuleError as err:
            problems.extend(err.diagnostics)
    problems.raise_if_errors()
    text = to_crm(part.model, texts) if to == "crm" else to_yaml(part.model, texts)
    kept = comments.gather(source, part.doc, part.model)
    if not kept:
        return text
    printed, _ = read_document(SourceFile(f"fmt{SUFFIXES[to]}", text))
    assert printed is not None  # what fmt prints reads back
    return comments.place(text, printed, part.model, kept)


def convert_folder(folder: str | PathLike[str], to: str) -> dict[PurePath, str]:
    """Each rule file under ``folder`` converted, by its output path relative to ``folder``
    (``scoring.yaml`` -> ``scoring.crm``); raises :class:`RuleError` with every file's problems."""
    root = FsPath(folder)
    files, problems = rule_files([root])
    collector = Collector()
    collector.extend(problems)
    sources: list[SourceFile] = []
    converted: dict[PurePath, str] = {}
    for file in files:
        source = SourceFile(str(file), file.read_text(encoding="utf-8"))
        sources.append(source)
        target = file.relative_to(root).with_suffix(SUFFIXES[to])
        try:
            text = convert(source, to)
        except RuleError as err:
            collector.extend(err.diagnostics)
            continue
        if target in converted:
            collector.add(Diagnostic.at(Code.DUPLICATE, f"another file converts to {target} too", source, 0))
        converted[target] = text
    collector.raise_if_errors()
    verify(sources, [SourceFile(str(root / path), text) for path, text in converted.items()])
    return converted


def verify(before: list[SourceFile], after: list[SourceFile]) -> None:
    """Raise :class:`LossError` when ``before`` loads as a rule set and ``after`` does not
    load into the same one (same version). A rule set that does not load is not compared."""
    try:
        expected = load_sources(before, Collector()).version
    except RuleError:
        return
    try:
        got = load_sources(after, Collector()).version
    except RuleError as err:
        raise LossError(f"the converted rules do not load:\n{err}") from None
    if got != expected:
        raise LossError(f"the converted rules have another version ({got[:12]}, not {expected[:12]})")


def expressions(model: RuleFile) -> Iterator[tuple[Path, str]]:
    """Every expression of a rule file, with its path in the file."""
    for name, score in model.scores.items():
        for i, score_rule in enumerate(score.rules):
            yield ("scores", name, "rules", i, "when"), score_rule.when
            yield ("scores", name, "rules", i, "points"), score_rule.points
    for stage in ("registration", "ftd"):
        for i, route in enumerate(getattr(model.routing, stage)):
            yield ("routing", stage, i, "when"), route.when
            if route.assign.agent is not None:
                yield ("routing", stage, i, "assign", "agent"), route.assign.agent
            if route.assign.require is not None:
                yield ("routing", stage, i, "assign", "require"), route.assign.require
    for i, trigger in enumerate(model.triggers):
        yield ("triggers", i, "when"), trigger.when
        if trigger.priority is not None:
            yield ("triggers", i, "priority"), trigger.priority


def _whole(value: float) -> int | float:
    """A float field's value as the shortest number that gives it back (70.0 -> 70)."""
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def _settings(item: BaseModel, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The fields of a desk, agent, trigger or target that differ from their default."""
    data = item.model_dump(mode="json", exclude_defaults=True, by_alias=True)
    for key in skip:
        data.pop(key, None)
    if "weight" in data:
        data["weight"] = _whole(data["weight"])
    return data


# ---- .crm -------------------------------------------------------------------------------------

def crm_name(text: str) -> str:
    """A name or text: bare when the grammar reads it back as the same text, else quoted.

    A keyword is a name where a name is expected, but `true`, `false` and `null` are values."""
    return text if BARE_NAME.fullmatch(text) and text not in ("true", "false", "null") else string_text(text)


def crm_key(text: str) -> str:
    """A setting's key: quoted when it is a keyword (after an expression it would read as one)."""
    return string_text(text) if text in KEYWORDS and text != "desk" else crm_name(text)


def _crm_scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return number_text(value) if value >= 0 else "-" + number_text(-value)
    text = str(value)
    return text if BARE_DURATION.fullmatch(text) else crm_name(text)


def _crm_value(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_crm_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + " ".join(f"{crm_key(k)} {_crm_setting(v)}" for k, v in value.items()) + " }"
    return _crm_scalar(value)


def _crm_setting(value: Any) -> str:
    """A setting's value: a list of one or more items without brackets, an empty one with."""
    if isinstance(value, list) and value and not any(isinstance(v, list | dict) for v in value):
        return ", ".join(_crm_scalar(v) for v in value)
    return _crm_value(value)


TEXT_SETTINGS = frozenset({"name", "hours", "email", "away_until"})  # free text: always quoted


def _crm_block(keyword: str, name: str, settings: dict[str, Any], head: str = "", extra: list[str] | None = None) -> str:
    lines = [
        f"  {crm_key(key)} {string_text(value) if key in TEXT_SETTINGS and isinstance(value, str) else _crm_setting(value)}"
        for key, value in settings.items()
    ]
    lines = (extra or []) + lines
    opening = f"{keyword} {crm_name(name)}{head}"
    if not lines:
        return opening + (" {}" if keyword == "trigger" else "")
    return opening + " {\n" + "\n".join(lines) + "\n}"


def to_crm(model: RuleFile, texts: dict[Path, str]) -> str:
    """A rule file in the ``.crm`` syntax (``texts``: each expression's canonical text by path)."""
    sections: list[str] = []  # separated by a blank line
    if model.lists:
        sections.append("\n".join(
            f"list {crm_name(name)} = [" + ", ".join(string_text(v) if isinstance(v, str) else _crm_scalar(v) for v in values) + "]"
            for name, values in model.lists.items()
        ))
    if model.schema_.client:
        lines = ["schema client {"]
        for name, spec in model.schema_.client.items():
            if isinstance(spec, str):
                lines.append(f"  {crm_name(name)}: {_crm_type(spec)}")
            else:
                lines.append(f"  {crm_name(name)}: {_crm_type(spec.type)} = {_crm_value(_json(spec.default))}")
        sections.append("\n".join([*lines, "}"]))
    sections.extend(_crm_block("desk", desk.id, _settings(desk, ("id",))) for desk in model.desks)
    sections.extend(_crm_block("agent", agent.id, _settings(agent, ("id",))) for agent in model.agents)
    for name, score in model.scores.items():
        lines = [f"score {crm_name(name)} {{"]
        for i, score_rule in enumerate(score.rules):
            path = ("scores", name, "rules", i)
            lines.append(_crm_rule(score_rule.name, texts[(*path, "when")], texts[(*path, "points")]))
        for band, threshold in score.bands.items():
            lines.append(f"  band {crm_name(band)}" + ("" if threshold is None else f" >= {_crm_scalar(_whole(threshold))}"))
        sections.append("\n".join([*lines, "}"]))
    for stage in ("registration", "ftd"):
        routes = getattr(model.routing, stage)
        if routes:
            sections.append("\n".join([f"route {stage} {{", *(_crm_route(stage, i, r, texts) for i, r in enumerate(routes)), "}"]))
    sections.extend(_crm_trigger(i, trigger, texts) for i, trigger in enumerate(model.triggers))
    if model.targets:
        sections.append("\n".join(_crm_target(target) for target in model.targets))
    return "\n\n".join(sections) + "\n" if sections else ""


_TYPE = re.compile(r"[a-z]+(<[a-z]+\??>)?\??")


def _crm_type(text: str) -> str:
    return text if _TYPE.fullmatch(text) else string_text(text)


def _json(value: Any) -> Any:
    """A schema default as JSON would hold it (a timestamp as its ISO text)."""
    return value.isoformat() if hasattr(value, "isoformat") else value


WIDTH = 100  # a rule or trigger head longer than this puts `when` and `=>` on lines of their own


def _crm_rule(name: str, when: str, then: str) -> str:
    line = f"  rule {crm_name(name)} when {when} => {then}"
    return line if len(line) <= WIDTH else f"  rule {crm_name(name)}\n    when {when}\n    => {then}"


def _crm_route(stage: str, i: int, route: Any, texts: dict[Path, str]) -> str:
    path = ("routing", stage, i)
    assign = route.assign
    clauses = []
    if assign.agent is not None:
        clauses.append(f"agent {texts[(*path, 'assign', 'agent')]}")
    if assign.desk is not None:
        clauses.append(f"desk {crm_name(assign.desk)}")
    if assign.strategy is not None:
        clauses.append(f"by {assign.strategy}")
    line = _crm_rule(route.name, texts[(*path, "when")], " ".join(clauses))
    if assign.require is not None:
        line += f"\n    require {texts[(*path, 'assign', 'require')]}"
    return line


def _crm_trigger(i: int, trigger: Trigger, texts: dict[Path, str]) -> str:
    path = ("triggers", i)
    head = f" on {crm_name(trigger.on)}" if trigger.on is not None else ""
    when = texts[(*path, "when")]
    head += f" when {when}" if len(f"trigger {trigger.name}{head} when {when} {{") <= WIDTH else f"\n    when {when}"
    settings = _settings(trigger, ("name", "on", "when", "priority"))
    extra = []
    if "queue" in settings:
        extra.append(f"  queue {_crm_scalar(settings.pop('queue'))}")
    if trigger.priority is not None:
        extra.append(f"  priority {texts[(*path, 'priority')]}")
    actions = settings.pop("actions", None)
    if actions:
        extra.append("  actions " + ",\n          ".join(_crm_scalar(a) for a in actions))
    return _crm_block("trigger", trigger.name, settings, head, extra)


def _crm_target(target: Target) -> str:
    line = (f"target {crm_name(target.metric)} = {_crm_scalar(_whole(target.value))}"
            f" per {crm_name(target.per)} per {crm_name(target.period)}")
    return line + (f" for desk {crm_name(target.desk)}" if target.desk is not None else "")


# ---- YAML -------------------------------------------------------------------------------------

class _Flow(list):  # type: ignore[type-arg]
    """A list printed in flow style: [a, b]."""


class _FlowMap(dict):  # type: ignore[type-arg]
    """A mapping printed in flow style: {id: a1, desk: sales}."""


class _Expression(str):
    """An expression, printed single-quoted where YAML allows it (as the examples are)."""

    __slots__ = ()


class _Dumper(yaml.SafeDumper):
    """SafeDumper that leaves `on` unquoted (crmcore reads YAML 1.2 booleans: true/false only)
    and indents a list under its key."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


_Dumper.yaml_implicit_resolvers = {
    first: [
        (tag, re.compile(r"^(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|off|Off|OFF)$", re.X))
        if tag == "tag:yaml.org,2002:bool" else (tag, regexp)
        for tag, regexp in resolvers
    ]
    for first, resolvers in yaml.SafeDumper.yaml_implicit_resolvers.items()
}
_Dumper.add_representer(_Flow, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))
_Dumper.add_representer(_FlowMap, lambda d, v: d.represent_mapping("tag:yaml.org,2002:map", v.items(), flow_style=True))
_Dumper.add_representer(_Expression, lambda d, v: d.represent_scalar("tag:yaml.org,2002:str", str(v), style="'"))


def _flow(value: Any) -> Any:
    if isinstance(value, dict):
        return _FlowMap({k: _flow(v) for k, v in value.items()})
    if isinstance(value, list):
        return _Flow(_flow(v) for v in value)
    return value


_PLAIN_NUMBER = re.compile(r"[0-9]{1,15}")


def _yaml_expression(text: str) -> Any:
    """An expression's canonical text; a plain number or boolean unquoted (`points: 20`, `when: true`)."""
    if text in ("true", "false"):
        return text == "true"
    return int(text) if _PLAIN_NUMBER.fullmatch(text) else _Expression(text)


def to_yaml(model: RuleFile, texts: dict[Path, str]) -> str:
    """A rule file in the YAML syntax (``texts``: each expression's canonical text by path)."""
    document: dict[str, Any] = {"version": model.version}
    if model.lists:
        document["lists"] = {name: _Flow(values) for name, values in model.lists.items()}
    if model.schema_.client:
        document["schema"] = {"client": {
            name: spec if isinstance(spec, str) else _FlowMap({"type": spec.type, "default": _flow(_json(spec.default))})
            for name, spec in model.schema_.client.items()
        }}
    if model.desks:
        document["desks"] = [_flow(_desk_or_agent(desk)) for desk in model.desks]
    if model.agents:
        document["agents"] = [_flow(_desk_or_agent(agent)) for agent in model.agents]
    if model.scores:
        document["scores"] = {}
        for name, score in model.scores.items():
            rules = []
            for i, score_rule in enumerate(score.rules):
                path = ("scores", name, "rules", i)
                rules.append({"name": score_rule.name, "when": _yaml_expression(texts[(*path, "when")]),
                              "points": _yaml_expression(texts[(*path, "points")])})
            entry: dict[str, Any] = {"rules": rules}
            if score.bands:
                entry["bands"] = _FlowMap({band: None if t is None else _whole(t) for band, t in score.bands.items()})
            document["scores"][name] = entry
    routing = {stage: [_yaml_route(stage, i, route, texts) for i, route in enumerate(getattr(model.routing, stage))]
               for stage in ("registration", "ftd") if getattr(model.routing, stage)}
    if routing:
        document["routing"] = routing
    if model.triggers:
        document["triggers"] = [_yaml_trigger(i, trigger, texts) for i, trigger in enumerate(model.triggers)]
    if model.targets:
        document["targets"] = [_FlowMap({**_settings(t), "value": _whole(t.value)}) for t in model.targets]
    text: str = yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=2**31 - 1)
    # a blank line between the top-level sections, as a person would write it
    return re.sub(r"\n(?=[a-z])", "\n\n", text)


def _desk_or_agent(item: Desk | Agent) -> dict[str, Any]:
    return {"id": item.id, **_settings(item, ("id",))}


def _yaml_route(stage: str, i: int, route: Any, texts: dict[Path, str]) -> dict[str, Any]:
    path = ("routing", stage, i)
    assign: dict[str, Any] = {}
    for key in ("agent", "desk", "strategy", "require"):
        value = getattr(route.assign, key)
        if value is not None:
            assign[key] = _yaml_expression(texts[(*path, "assign", key)]) if key in ("agent", "require") else value
    return {"name": route.name, "when": _yaml_expression(texts[(*path, "when")]), "assign": _FlowMap(assign)}


def _yaml_trigger(i: int, trigger: Trigger, texts: dict[Path, str]) -> dict[str, Any]:
    path = ("triggers", i)
    entry: dict[str, Any] = {"name": trigger.name}
    if trigger.on is not None:
        entry["on"] = trigger.on
    entry["when"] = _yaml_expression(texts[(*path, "when")])
    for key, value in _settings(trigger, ("name", "on", "when")).items():
        if key == "priority":
            entry[key] = _yaml_expression(texts[(*path, "priority")])
        else:
            entry[key] = _flow(value)
    return entry

