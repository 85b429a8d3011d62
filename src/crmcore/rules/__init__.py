"""The rules language: grammar, typed AST, checker, compilers (Python, SQL), loaders, diagnostics."""

from crmcore.rules.diagnostics import CrmError, Diagnostic, EvaluationError, RuleError
from crmcore.rules.loader import load_rules, loads
from crmcore.rules.ruleset import Evaluation, RouteTarget, RuleSet

__all__ = [
    "CrmError",
    "Diagnostic",
    "Evaluation",
    "EvaluationError",
    "RouteTarget",
    "RuleError",
    "RuleSet",
    "load_rules",
    "loads",
]
