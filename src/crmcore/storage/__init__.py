"""Storage: the Store protocol the engine runs on, and its implementations.

:class:`MemoryStore` keeps everything in memory (tests, rule tests, backtests, one process);
:class:`SqlStore` (SQLAlchemy on SQLite and PostgreSQL) implements the same protocol.
"""

from crmcore.storage.base import (
    DuplicateEvent,
    SchemaVersionError,
    Store,
    StoreConfigError,
    StoreUnavailable,
)
from crmcore.storage.memory import MemoryStore
from crmcore.storage.records import Assignment, DeadLetter, Decision, PoolEntry, QueueItem
from crmcore.storage.sql import SqlStore

__all__ = [
    "Assignment", "DeadLetter", "Decision", "DuplicateEvent", "MemoryStore", "PoolEntry", "QueueItem",
    "SchemaVersionError", "SqlStore", "Store", "StoreConfigError", "StoreUnavailable",
]
