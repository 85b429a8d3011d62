"""The ``crmcore`` command: a thin layer over the public API."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import TextIO

from crmcore.rules import RuleError, RuleSet, load_rules


def _summary(rules: RuleSet) -> dict[str, object]:
    return {
        "version": rules.version,
        "scores": {name: len(score.rules) for name, score in rules.scores.items()},
        "routing": {stage: len(routes) for stage, routes in rules.routing.items()},
        "triggers": len(rules.triggers),
        "desks": len(rules.desks),
        "agents": len(rules.agents),
        "lists": len(rules.lists),
    }


def cmd_check(args: argparse.Namespace, out: TextIO) -> int:
    """Load and check rule files; every diagnostic with file:line:col, source line and caret."""
    try:
        rules = load_rules(args.paths)
    except RuleError as err:
        if args.format == "json":
            json.dump({"ok": False, "diagnostics": [d.as_json() for d in err.diagnostics]}, out, indent=2)
            out.write("\n")
        else:
            for diagnostic in err.diagnostics:
                out.write(diagnostic.render() + "\n")
            errors = len(err.errors)
            warnings = len(err.diagnostics) - errors
            out.write(f"{errors} error{'s' if errors != 1 else ''}, {warnings} warning{'s' if warnings != 1 else ''}\n")
        return 1
    summary = _summary(rules)
    if args.format == "json":
        json.dump({"ok": True, "diagnostics": [d.as_json() for d in rules.warnings], "summary": summary}, out, indent=2)
        out.write("\n")
        return 0
    for warning in rules.warnings:
        out.write(warning.render() + "\n")
    score_rules = sum(len(s.rules) for s in rules.scores.values())
    routes = sum(len(r) for r in rules.routing.values())
    out.write(
        f"ok: {', '.join(map(str, args.paths))}: {len(rules.scores)} score(s) with {score_rules} rules, "
        f"{routes} routing rules, {len(rules.triggers)} triggers, {len(rules.desks)} desks, "
        f"{len(rules.agents)} agents; version {rules.version[:12]}"
        + (f"; {len(rules.warnings)} warning(s)" if rules.warnings else "")
        + "\n"
    )
    return 0


def cmd_schema(args: argparse.Namespace, out: TextIO) -> int:
    """Print the JSON Schema of crmcore's input (``events``: every event type)."""
    from crmcore.events import events_json_schema

    json.dump(events_json_schema(), out, indent=2)
    out.write("\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crmcore", description="Sales-and-retention rules for forex/CFD brokers.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = commands.add_parser("check", help="load and check rule files", description=cmd_check.__doc__)
    check.add_argument("paths", nargs="+", metavar="PATH", help="rule files or folders")
    check.add_argument("--format", choices=("text", "json"), default="text")
    check.set_defaults(run=cmd_check)
    schema = commands.add_parser("schema", help="print a JSON Schema", description=cmd_schema.__doc__)
    schema.add_argument("what", choices=("events",), help="what to describe")
    schema.set_defaults(run=cmd_schema)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.run(args, out or sys.stdout)
    return code


def entry() -> None:
    """Console-script entry point."""
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:  # `crmcore schema events | head`: the reader left, which is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
