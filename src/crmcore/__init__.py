"""crmcore: the sales-and-retention rules of a forex/CFD broker, typed, explainable and compiled."""

from crmcore import kpi  # the KPI module: crmcore.kpi.compute(...)
from crmcore.engine import BatchSummary, Engine, EngineError, Result
from crmcore.events import BadEvent, EventError, parse_event, read_events
from crmcore.notify import (
    CallbackNotifier,
    InMemoryNotifier,
    LoggingNotifier,
    Notification,
    Notifier,
    NullNotifier,
)
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
from crmcore.storage import (
    MemoryStore,
    SchemaVersionError,
    SqlStore,
    Store,
    StoreConfigError,
    StoreUnavailable,
)
from crmcore.views import PermissionDenied, View

__version__ = "0.1.0"

__all__ = [
    "BadEvent",
    "BatchSummary",
    "CallbackNotifier",
    "CrmError",
    "Diagnostic",
    "Engine",
    "EngineError",
    "Evaluation",
    "EvaluationError",
    "EventError",
    "InMemoryNotifier",
    "LoggingNotifier",
    "MemoryStore",
    "Notification",
    "Notifier",
    "NullNotifier",
    "PermissionDenied",
    "Result",
    "RuleError",
    "RuleSet",
    "SchemaVersionError",
    "SqlStore",
    "Store",
    "StoreConfigError",
    "StoreUnavailable",
    "View",
    "__version__",
    "kpi",
    "load_rules",
    "loads",
    "parse_event",
    "read_events",
]
