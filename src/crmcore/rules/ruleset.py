"""A loaded rule set: checked expressions, the domain view the engine uses, and
``evaluate`` — the hot path of every decision, one generated Python function."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from operator import itemgetter
from typing import Any, NamedTuple

from crmcore.rules import ast
from crmcore.rules.diagnostics import Diagnostic, EvaluationError, Origin
from crmcore.rules.interpreter import Scope
from crmcore.rules.model import Desk, RuleFile, duration_seconds
from crmcore.rules.python import CodeGen, Reads, build_function, compile_expression
from crmcore.rules.types import Type
from crmcore.rules.windows import from_events


@dataclass(frozen=True, eq=False)
class Expr:
    """One checked expression: its text, typed tree, origin and (lazily) compiled function."""

    text: str
    canonical: str
    node: ast.Node
    origin: Origin
    _compiled: list[Callable[[Scope], Any]] = field(default_factory=list, repr=False)
    _context: list[tuple[Mapping[str, tuple[Any, ...]], Mapping[str, Any]]] = field(default_factory=list, repr=False)

    @property
    def location(self) -> str:
        line, column = self.origin.source.position(self.origin.file_offset(0))
        return f"{self.origin.source.path}:{line}:{column}"

    def bind(self, lists: Mapping[str, tuple[Any, ...]], defaults: Mapping[str, Any]) -> None:
        """Give the expression what compiling it needs; it is compiled on first use."""
        self._context.append((lists, defaults))

    def __call__(self, scope: Scope) -> Any:
        """The expression's value in ``scope`` (compiled Python)."""
        if not self._compiled:  # racing threads may both compile: the results are the same
            lists, defaults = self._context[0]
            self._compiled.append(compile_expression(self.node, lists, defaults, self.location))
        return self._compiled[0](scope)


@dataclass(frozen=True)
class ScoreRule:
    name: str
    when: Expr
    points: Expr


@dataclass(frozen=True)
class Score:
    name: str
    rules: tuple[ScoreRule, ...]
    bands: tuple[tuple[str, float | None], ...]

    def band(self, value: float) -> str | None:
        """The first band whose threshold the score reaches; below all, the last band."""
        for name, threshold in self.bands:
            if threshold is not None and value >= threshold:
                return name
        return self.bands[-1][0] if self.bands else None


@dataclass(frozen=True)
class Route:
    name: str
    stage: str
    when: Expr
    agent: Expr | None
    desk: str | None
    strategy: str | None
    require: Expr | None


@dataclass(frozen=True)
class Trigger:
    name: str
    on: str | None
    when: Expr
    queue: str | None
    priority: Expr | None
    actions: tuple[str, ...]
    notify: tuple[str, ...]
    cooldown: float | None  # seconds


class RouteTarget(NamedTuple):
    """The registration rule that matched, and what it assigns to (no agent is picked)."""

    rule: str
    desk: str | None
    strategy: str | None
    agent: str | None

    @property
    def name(self) -> str:
        """The rule's name (SPEC 1: "its name and assign target"); the same as ``rule``."""
        return self.rule


def _named_desks(document: RuleFile) -> dict[str, Desk]:
    """A rule set that declares no desks leaves them to the host (W502): the desks its agents,
    routing rules and targets name, as desks of no SLA, so that the engine and the reports
    know them. Not part of the canonical form: the files are as written."""
    names = [agent.desk for agent in document.agents]
    names += [rule.assign.desk for stage in ("registration", "ftd") for rule in getattr(document.routing, stage)
              if rule.assign.desk is not None]
    names += [target.desk for target in document.targets if target.desk is not None]
    return {name: Desk.model_construct(id=name) for name in dict.fromkeys(names)}  # the host's names, as given


def _field(index: int, doc: str) -> Any:
    """A read-only field of a tuple subclass: CPython's C-level getter (what namedtuple uses)
    where it exists, else a property."""
    try:
        from collections import _tuplegetter  # type: ignore[attr-defined]
    except ImportError:  # pragma: no cover - other Pythons
        return property(itemgetter(index), doc=doc)
    return _tuplegetter(index, doc)


class Evaluation(tuple):  # type: ignore[type-arg]
    """The outcome of ``rules.evaluate``: scores, bands, breakdowns, route and triggers.

    A tuple underneath, built by the generated code in one step: reading a field costs
    no more than indexing.
    """

    __slots__ = ()

    scores: dict[str, float] = _field(0, "Each score's value.")  # type: ignore[assignment]
    bands: dict[str, str | None] = _field(1, "Each score's band.")  # type: ignore[assignment]
    route: RouteTarget | None = _field(3, "The first registration rule that matched, with its target (no agent is picked).")  # type: ignore[assignment]
    triggers: list[str] = _field(4, "Names of the condition triggers (no ``on:``) that hold.")  # type: ignore[assignment]

    @property
    def breakdown(self) -> dict[str, dict[str, float]]:
        """Per score, the points of each rule whose condition held.

        Recomputed from the context when read (keeping it off the hot path): evaluation is
        pure, so it is what the scores were made of — as long as the host has not changed
        the context's records in between.
        """
        rules: RuleSet = self[5]
        result: dict[str, dict[str, float]] = {score: {} for score in self.scores}
        for (score, rule), points in zip(rules.point_names, rules.points(self[2]), strict=True):
            if points is not None:
                result[score][rule] = points
        return result

    def as_dict(self) -> dict[str, Any]:
        route = self.route
        return {
            "scores": self.scores,
            "bands": self.bands,
            "breakdown": self.breakdown,
            "route": None if route is None else route._asdict(),
            "triggers": self.triggers,
        }

    def __repr__(self) -> str:
        return f"Evaluation(scores={self.scores}, bands={self.bands}, route={self.route}, triggers={self.triggers})"


class RuleSet:
    """A checked, compiled rule set. Build it with :func:`crmcore.load_rules`."""

    def __init__(
        self,
        document: RuleFile,
        canonical: str,
        exprs: Mapping[tuple[str, ...], Expr],
        lists: Mapping[str, tuple[Any, ...]],
        client_types: Mapping[str, Type],
        defaults: Mapping[str, Any],
        score_order: tuple[str, ...],
        warnings: list[Diagnostic],
    ):
        self.document = document
        self.canonical = canonical
        self.version = hashlib.sha256(canonical.encode()).hexdigest()
        self.exprs = dict(exprs)
        self.lists = dict(lists)
        self.client_types = client_types
        self.defaults = dict(defaults)
        self.score_order = score_order
        self.warnings = warnings
        for expr in self.exprs.values():
            expr.bind(self.lists, self.defaults)
        self.desks = {desk.id: desk for desk in document.desks} or _named_desks(document)
        self.agents = {agent.id: agent for agent in document.agents}
        self.scores = {
            name: Score(
                name,
                tuple(ScoreRule(r.name, exprs[("score", name, r.name, "when")], exprs[("score", name, r.name, "points")]) for r in document.scores[name].rules),
                tuple(document.scores[name].bands.items()),
            )
            for name in score_order
        }
        self.routing: dict[str, tuple[Route, ...]] = {
            stage: tuple(
                Route(
                    r.name, stage, exprs[("route", stage, r.name, "when")], exprs.get(("route", stage, r.name, "agent")),
                    r.assign.desk, (r.assign.strategy or "round_robin") if r.assign.desk else None,
                    exprs.get(("route", stage, r.name, "require")),
                )
                for r in getattr(document.routing, stage)
            )
            for stage in ("registration", "ftd")
        }
        self.triggers = tuple(
            Trigger(
                t.name, t.on, exprs[("trigger", t.name, "when")], t.queue, exprs.get(("trigger", t.name, "priority")),
                tuple(t.actions), tuple(t.notify), duration_seconds(t.cooldown) if t.cooldown else None,
            )
            for t in document.triggers
        )
        self.condition_triggers = tuple(t for t in self.triggers if t.on is None)
        self.targets = tuple(document.targets)
        self.point_names = tuple((name, rule.name) for name in score_order for rule in self.scores[name].rules)
        self._evaluate, self.uses_windows, self.uses_now = _fused_evaluator(self)
        self._breakdowns: list[Callable[..., Any]] = []
        self.evaluate = self._evaluate  # type: ignore[method-assign]  # the generated function itself: no extra call

    def points(self, context: Mapping[str, Any]) -> tuple[Any, ...]:
        """Each score rule's points for ``context`` (None where its condition does not hold),
        in ``point_names`` order; the function is generated on first use."""
        if not self._breakdowns:  # racing threads may both generate it: the results are the same
            self._breakdowns.append(_generate(self, self.uses_windows, breakdown=True)[0])
        return self._breakdowns[0](context)  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"RuleSet(version={self.version[:12]}, scores={list(self.scores)}, routes={len(self.routing['registration'])}, triggers={len(self.triggers)})"

    def evaluate(self, context: Mapping[str, Any]) -> Evaluation:
        """Scores, bands, breakdowns, the first matching registration route and the condition
        triggers that hold, for one client context; pure, no store, no side effects.

        ``context``: ``client`` (any mapping), optional ``ib``, ``trading``, ``events``
        (history for activity windows) and ``now`` (aware datetime, epoch seconds or ISO text).
        """
        return self._evaluate(context)  # type: ignore[no-any-return]

    def evaluate_many(self, contexts: Iterable[Mapping[str, Any]]) -> list[Evaluation]:
        evaluate = self.evaluate
        return [evaluate(context) for context in contexts]

    def _failure(self, context: Any, exc: Exception) -> EvaluationError:
        """Name the field that made evaluation fail (the fast path does not check types)."""
        try:
            return self._diagnose(context, exc)
        except Exception:  # the context is too broken to diagnose: say what failed
            return EvaluationError(f"evaluation failed: {type(exc).__name__}: {exc}")

    def _diagnose(self, context: Any, exc: Exception) -> EvaluationError:
        if not isinstance(context, Mapping):
            return EvaluationError(f"the context must be a mapping with 'client', got {type(context).__name__}")
        for root in ("client", "ib", "trading"):
            record = context.get(root)
            if record is not None and not isinstance(record, Mapping):
                return EvaluationError(f"context['{root}'] must be a mapping, got {type(record).__name__}")
        if "client" not in context:
            return EvaluationError("the context has no 'client'")
        if self.uses_now and context.get("now") is None:
            return EvaluationError("the rules use 'now' (days_since, windows, ...) but the context has no 'now'")
        for key, expr in self.exprs.items():
            for node in expr.node.walk():
                if isinstance(node, ast.Name) and len(node.parts) == 2 and node.parts[0] in ("client", "ib", "trading"):
                    problem = _field_problem(context, node, self.defaults)
                    if problem:
                        return EvaluationError(f"{problem} (used by {'.'.join(key[:-1])} at {expr.location})")
        return EvaluationError(f"evaluation failed: {type(exc).__name__}: {exc}")


def _field_problem(context: Mapping[str, Any], node: ast.Name, defaults: Mapping[str, Any]) -> str | None:
    root, name = node.parts
    record = context.get(root)
    if record is None or node.type is None:
        return None
    if name == "stage" and root == "client":
        return None
    value = record.get(name)
    if value is None and root == "client":
        value = defaults.get(name)
    if value is None:
        return None if node.type.nullable or root != "client" else f"{node.dotted} is required ({node.type}) but missing"
    expected = {
        "timestamp": (datetime, date, int, float, str),
        "number": (int, float, Decimal),
        "int": (int,),
        "string": (str,),
        "bool": (bool, int),
        "list": (list, tuple, set, frozenset),
    }.get(node.type.base)
    if expected is not None and not isinstance(value, expected):
        return f"{node.dotted} should be {node.type.nonnull()}, got {type(value).__name__} {value!r}"
    if node.type.base == "timestamp" and isinstance(value, str):
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return f"{node.dotted} is not an ISO 8601 timestamp: {value!r}"
    return None


def _fused_evaluator(rules: RuleSet) -> tuple[Callable[..., Any], bool, bool]:
    """Generate the hot path (scores, bands, route, condition triggers)."""
    uses_windows = any(isinstance(n, ast.Window) for e in rules.exprs.values() for n in e.node.walk())
    evaluate, uses_now = _generate(rules, uses_windows, breakdown=False)
    return evaluate, uses_windows, uses_now


def _generate(rules: RuleSet, uses_windows: bool, breakdown: bool) -> tuple[Callable[..., Any], bool]:
    reads = Reads({"client": "client", "ib": "ib", "trading": "trading", "now": "context.get('now')"}, {}, {}, rules.defaults)
    gen = CodeGen(reads, rules.lists)
    body: list[str] = []
    score_vars: list[str] = []
    band_vars: list[str] = []
    point_vars: list[str] = []
    for i, name in enumerate(rules.score_order):
        score = rules.scores[name]
        total, band = f"_score{i}", f"_band{i}"
        body.append(f"{total} = 0")
        for rule in score.rules:
            body.append(_comment(f"{name}.{rule.name}", rule.when))
            body.append(f"if {gen.expr(rule.when.node)}:")
            points = gen.value(rule.points.node)
            nullable = rule.points.node.type is None or rule.points.node.type.nullable
            if breakdown:
                p = f"_p{len(point_vars)}"
                point_vars.append(p)
                body.append(f"    {p} = {points}")
                if nullable:
                    body.append(f"    if {p} is None: {p} = 0")
                body.extend([f"    {total} += {p}", "else:", f"    {p} = None"])
            elif nullable:
                body.extend([f"    _points = {points}", f"    if _points is not None: {total} += _points"])
            else:
                body.append(f"    {total} += {points}")
        chain = "None"
        if score.bands:
            chain = repr(score.bands[-1][0])
            for band_name, threshold in reversed(score.bands[:-1]):
                chain = f"{band_name!r} if {total} >= {threshold!r} else {chain}"
        body.append(f"{band} = {chain}")
        reads.score_locals[name] = total  # type: ignore[index]
        reads.band_locals[name] = band  # type: ignore[index]
        score_vars.append(total)
        band_vars.append(band)
    if breakdown:
        body.append(f"return {_tuple(point_vars)}")
    else:
        _route_and_triggers(rules, gen, body)
        scores = "{" + ", ".join(f"{n!r}: {v}" for n, v in zip(rules.score_order, score_vars, strict=True)) + "}"
        bands = "{" + ", ".join(f"{n!r}: {v}" for n, v in zip(rules.score_order, band_vars, strict=True)) + "}"
        body.append(f"return _new(_Evaluation, ({scores}, {bands}, context, _route, _held, _RULES))")
    gen.constants.update(
        _RouteTarget=RouteTarget, _Evaluation=Evaluation, _new=tuple.__new__, _RULES=rules,
        _failure=rules._failure, _from_events=from_events,
    )
    head = ["client = context['client']"]
    roots = {parts[0] for parts in gen.names} | gen.also_reads
    head += [f"{root} = context.get({root!r})" for root in ("ib", "trading") if root in roots]
    if gen.uses_now:
        head.append("now = context.get('now')")
    if uses_windows:
        head.append("window = _from_events(context.get('events'))")
    name = "_breakdown" if breakdown else "_evaluate"
    function = build_function(name, "context", body, gen, name.strip("_"), head, on_error="_failure(context, exc)")
    return function, gen.uses_now


def _route_and_triggers(rules: RuleSet, gen: CodeGen, body: list[str]) -> None:
    """The first matching registration route (an if/elif chain) and the condition triggers."""
    body.append("_route = None")
    for i, route in enumerate(rules.routing["registration"]):
        body.append(_comment(f"route {route.name}", route.when))
        test = gen.expr(route.when.node)
        body.append(f"{'if' if i == 0 else 'elif'} {test}:" if test != "True" else ("else:" if i else "if True:"))
        if route.agent is None:
            target = gen.constant(RouteTarget(route.name, route.desk, route.strategy, None), "_T")
        else:
            target = f"_RouteTarget({route.name!r}, None, None, {gen.value(route.agent.node)})"
        body.append(f"    _route = {target}")
        if test == "True":
            break
    body.append("_held = []")
    for trigger in rules.condition_triggers:
        body.append(_comment(f"trigger {trigger.name}", trigger.when))
        body.append(f"if {gen.expr(trigger.when.node)}: _held.append({trigger.name!r})")


def _comment(what: str, expr: Expr) -> str:
    """A source comment naming the rule; whatever a file path holds, it stays one comment line."""
    return "# " + repr(f"{what}: {expr.location}")


def _tuple(names: list[str]) -> str:
    return "(" + "".join(f"{n}, " for n in names) + ")"
