"""crmcore: the sales-and-retention rules of a forex/CFD broker, typed, explainable and compiled."""

from crmcore.rules import (
    CrmError,
    Diagnostic,
    Evaluation,
    EvaluationError,
    RuleError,
    RuleSet,
    load_rules,
    loads,
)

__version__ = "0.1.0"

__all__ = [
    "CrmError",
    "Diagnostic",
    "Evaluation",
    "EvaluationError",
    "RuleError",
    "RuleSet",
    "__version__",
    "load_rules",
    "loads",
]
