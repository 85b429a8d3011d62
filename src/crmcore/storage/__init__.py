"""Storage: the Store protocol the engine runs on, and its implementations.

:class:`MemoryStore` keeps everything in memory (tests, rule tests, backtests, one process);
the SQL store (SQLAlchemy on SQLite and PostgreSQL) implements the same protocol.
"""

from crmcore.storage.base import DuplicateEvent, Store, StoreUnavailable
from crmcore.storage.memory import MemoryStore
from crmcore.storage.records import Assignment, DeadLetter, Decision, PoolEntry, QueueItem

__all__ = [
    "Assignment", "DeadLetter", "Decision", "DuplicateEvent", "MemoryStore", "PoolEntry", "QueueItem", "Store",
    "StoreUnavailable",
]
