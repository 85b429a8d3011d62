"""crmcore's tables (SQLAlchemy Core), for SQLite and PostgreSQL.

:func:`tables` builds them on a ``MetaData``: a host may put them in its own ``schema``
and give them a ``prefix`` (default ``crm_``). Times are UTC (:class:`UtcDateTime`: aware
datetimes in and out, naive UTC in SQLite's text form, which the SQL compiler reads), money
is exact (:class:`Money`: NUMERIC on PostgreSQL, decimal text on SQLite). Every built-in
client field the SQL compiler reads is a typed, indexed column of ``clients``; the rest of
the record (schema fields, the trading snapshot) is tagged JSON (:mod:`crmcore.storage.codec`).

The migrations in ``crmcore/storage/migrations`` create exactly these tables;
``SCHEMA_VERSION`` is the head revision a store expects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from crmcore.storage.base import StoreConfigError

__all__ = ["SCHEMA_VERSION", "Money", "Tables", "UtcDateTime", "tables"]

SCHEMA_VERSION = "0001"
"""The migration revision these tables are; a store refuses a database at another one."""


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime; stored naive UTC (SQLite text, PostgreSQL ``timestamp``)."""

    impl = sa.DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: crmcore stores aware UTC times")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class _DecimalText(TypeDecorator[Decimal]):
    """Decimal as exact text (SQLite has no exact numeric type)."""

    impl = sa.String(64)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else str(Decimal(value))

    def process_result_value(self, value: str | None, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(value)


Money = sa.Numeric(asdecimal=True).with_variant(_DecimalText(), "sqlite")
"""Exact amounts as given (NUMERIC without a scale keeps "250.50"): NUMERIC on PostgreSQL,
decimal text on SQLite."""

_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,23}")

JsonText = sa.Text  # tagged JSON (codec.py): exact for datetimes and Decimals on both databases


@dataclass(frozen=True)
class Tables:
    metadata: sa.MetaData
    meta: sa.Table
    locks: sa.Table
    events: sa.Table
    clients: sa.Table
    agents: sa.Table
    desks: sa.Table
    ibs: sa.Table
    assignments: sa.Table
    open_counts: sa.Table
    routing_state: sa.Table
    pool: sa.Table
    scores: sa.Table
    decisions: sa.Table
    outbox: sa.Table
    dead_letters: sa.Table
    queue_items: sa.Table
    trigger_firings: sa.Table


def tables(metadata: sa.MetaData | None = None, *, prefix: str = "crm_") -> Tables:
    """crmcore's tables on ``metadata`` (a new one by default; give it ``schema=`` to put
    them in a schema of the host's), each named ``prefix + name``.

    ``prefix``: letters, digits and underscores, starting with a letter, at most 24
    characters (the longest index name must stay within PostgreSQL's 63)."""
    if not _PREFIX.fullmatch(prefix):
        raise StoreConfigError(
            f"table prefix {prefix!r}: use letters, digits and '_', starting with a letter, "
            "at most 24 characters (e.g. 'crm_')"
        )
    md = metadata if metadata is not None else sa.MetaData()

    def table(name: str, *items: Any) -> sa.Table:
        return sa.Table(prefix + name, md, *items)

    def ix(name: str) -> str:
        return f"ix_{prefix}{name}"

    meta = table("meta", sa.Column("key", sa.Text, primary_key=True), sa.Column("value", sa.Text))
    locks = table("locks", sa.Column("name", sa.Text, primary_key=True))
    events = table(
        "events",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("id", sa.Text, nullable=False, unique=True),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("client_id", sa.Text),
        sa.Column("at", UtcDateTime, nullable=False),
        sa.Column("status", sa.Text),
        sa.Column("amount", Money),
        sa.Column("volume", Money),
        sa.Column("pnl", Money),
        sa.Column("revenue", Money),
        sa.Column("data", JsonText, nullable=False),  # the event as its model dumps it
        sa.Index(ix("events_client"), "client_id", "at"),
        sa.Index(ix("events_type_at"), "type", "at"),
        sa.Index(ix("events_at"), "at"),
    )
    client_columns = [
        sa.Column("seq", sa.BigInteger, nullable=False),  # registration order
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("registered_at", UtcDateTime, nullable=False),
        sa.Column("country", sa.Text),
        sa.Column("region", sa.Text),
        sa.Column("language", sa.Text),
        sa.Column("email", sa.Text),
        sa.Column("phone_verified", sa.Boolean),
        sa.Column("ib_id", sa.Text),
        sa.Column("source", sa.Text),
        sa.Column("campaign", sa.Text),
        sa.Column("manager_id", sa.Text),
        sa.Column("stage", sa.Text, nullable=False),
        sa.Column("kyc_submitted_at", UtcDateTime),
        sa.Column("kyc_approved_at", UtcDateTime),
        sa.Column("ftd_at", UtcDateTime),
        sa.Column("ftd_amount", Money),
        sa.Column("balance", Money),
        sa.Column("last_login_at", UtcDateTime),
        sa.Column("last_trade_at", UtcDateTime),
        sa.Column("last_deposit_at", UtcDateTime),
        sa.Column("email_opens", sa.Integer),
        sa.Column("email_clicks", sa.Integer),
        sa.Column("status", sa.Text),
        sa.Column("desk_id", sa.Text),
        sa.Column("agent_id", sa.Text),
        sa.Column("snapshot_at", UtcDateTime),
        sa.Column("last_contact_at", UtcDateTime),
        sa.Column("next_follow_up_at", UtcDateTime),
        sa.Column("contact_count", sa.Integer),
        sa.Column("extra", JsonText, nullable=False),  # schema fields and the trading snapshot
    ]
    clients = table(
        "clients",
        *client_columns,
        *(sa.Index(ix(f"clients_{name}"), name) for name in (
            "seq", "registered_at", "country", "stage", "ftd_at", "last_login_at", "last_trade_at",
            "last_deposit_at", "desk_id", "agent_id", "source", "ib_id",
        )),
    )
    agents = table(
        "agents",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("desk", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("manager", sa.Text),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("data", JsonText, nullable=False),
    )
    desks = table(
        "desks",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("data", JsonText, nullable=False),
    )
    ibs = table(
        "ibs",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("quality", Money, nullable=False),
        sa.Column("agent_id", sa.Text),
        sa.Column("manager_id", sa.Text),
    )
    assignments = table(
        "assignments",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("client_id", sa.Text, nullable=False),
        sa.Column("agent_id", sa.Text, nullable=False),
        sa.Column("desk", sa.Text, nullable=False),
        sa.Column("stage", sa.Text, nullable=False),
        sa.Column("rule", sa.Text),
        sa.Column("strategy", sa.Text),
        sa.Column("assigned_at", UtcDateTime, nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("rule_version", sa.Text, nullable=False),
        sa.Column("trace", JsonText, nullable=False),
        sa.Column("sla_due_at", UtcDateTime),
        sa.Column("contacted_at", UtcDateTime),
        sa.Column("breached_at", UtcDateTime),
        sa.Column("ended_at", UtcDateTime),
        sa.Column("end_reason", sa.Text),
        sa.Column("ended_by", sa.Text),
        sa.Index(ix("assignments_client"), "client_id", "seq"),
        # one open assignment per client, whatever the workers do
        sa.Index(
            ix("assignments_open_client"), "client_id", unique=True,
            postgresql_where=sa.text("ended_at IS NULL"), sqlite_where=sa.text("ended_at IS NULL"),
        ),
        sa.Index(
            ix("assignments_open_agent"), "agent_id",
            postgresql_where=sa.text("ended_at IS NULL"), sqlite_where=sa.text("ended_at IS NULL"),
        ),
        sa.Index(ix("assignments_agent_time"), "agent_id", "assigned_at"),
    )
    open_counts = table(  # kept with every assignment started or ended: capacity reads it
        "open_counts",
        sa.Column("agent_id", sa.Text, primary_key=True),
        sa.Column("open", sa.Integer, nullable=False),
    )
    routing_state = table(
        "routing_state",
        sa.Column("desk", sa.Text, primary_key=True),
        sa.Column("pointer", sa.Text),
        sa.Column("current", JsonText, nullable=False),
    )
    pool = table(
        "pool",
        sa.Column("client_id", sa.Text, primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("desk", sa.Text, nullable=False),
        sa.Column("stage", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("since", UtcDateTime, nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("rule", sa.Text),
        sa.Index(ix("pool_desk"), "desk", "since", "seq"),
        sa.Index(ix("pool_seq"), "seq"),
    )
    scores = table(
        "scores",
        sa.Column("client_id", sa.Text, primary_key=True),
        sa.Column("scores", JsonText, nullable=False),
        sa.Column("bands", JsonText, nullable=False),
    )
    decisions = table(
        "decisions",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("client_id", sa.Text, nullable=False),
        sa.Column("at", UtcDateTime, nullable=False),
        sa.Column("cause", sa.Text, nullable=False),
        sa.Column("rule_version", sa.Text, nullable=False),
        sa.Column("data", JsonText, nullable=False),
        sa.Index(ix("decisions_client"), "client_id", "seq"),
    )
    outbox = table(
        "outbox",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("recipient", sa.Text, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("notification", JsonText, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UtcDateTime, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("delivered_at", UtcDateTime),
        sa.Index(ix("outbox_seq"), "seq"),
        sa.Index(
            ix("outbox_due"), "next_attempt_at",
            postgresql_where=sa.text("delivered_at IS NULL"), sqlite_where=sa.text("delivered_at IS NULL"),
        ),
    )
    dead_letters = table(
        "dead_letters",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.Text),
        sa.Column("line", sa.Integer),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("raw", sa.Text, nullable=False),
        sa.Index(ix("dead_letters_event"), "event_id", "line"),
    )
    queue_items = table(
        "queue_items",
        sa.Column("client_id", sa.Text, primary_key=True),
        sa.Column("queue", sa.Text, primary_key=True),
        sa.Column("trigger", sa.Text, nullable=False),
        sa.Column("priority", sa.Float, nullable=False),
        sa.Column("actions", JsonText, nullable=False),
        sa.Column("opened_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime),
        sa.Column("resolved_at", UtcDateTime),
        sa.Column("desk", sa.Text),
        sa.Column("agent_id", sa.Text),
        sa.Index(ix("queue_items_queue"), "queue", "priority"),
    )
    trigger_firings = table(
        "trigger_firings",
        sa.Column("client_id", sa.Text, primary_key=True),
        sa.Column("trigger", sa.Text, primary_key=True),
        sa.Column("at", UtcDateTime, nullable=False),
    )
    return Tables(
        md, meta, locks, events, clients, agents, desks, ibs, assignments, open_counts, routing_state, pool,
        scores, decisions, outbox, dead_letters, queue_items, trigger_firings,
    )
