"""crmcore's database migrations (Alembic, shipped in ``crmcore/storage/migrations``).

They run from Python or from ``crmcore db upgrade``; no ``alembic.ini`` is needed::

    from crmcore.storage import migrate
    migrate.upgrade("postgresql+psycopg://.../broker", schema="crm")   # to SCHEMA_VERSION
    migrate.check_version(engine, schema="crm")                          # "ok", "empty" or raises

Each (schema, prefix) pair is its own set of tables with its own revision table,
``{prefix}alembic_version`` in that schema: a host's own ``alembic_version`` is untouched.
An upgrade is one transaction (PostgreSQL; on SQLite a ``BEGIN IMMEDIATE`` one), serialised
against concurrent upgrades of the same tables (an advisory lock on PostgreSQL, SQLite's
write lock): several workers may call it at start-up, one creates the tables, the others
find them at head.
"""

from __future__ import annotations

import sqlite3
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError

from crmcore.storage.base import SchemaVersionError, no_sqlite_schema
from crmcore.storage.schema import SCHEMA_VERSION, tables

__all__ = [
    "MIGRATIONS",
    "SchemaVersionError",
    "alembic_config",
    "check_version",
    "current_version",
    "downgrade",
    "head",
    "upgrade",
    "version_table",
]

MIGRATIONS = Path(__file__).with_name("migrations")
"""The Alembic script directory shipped in the package."""

DEFAULT_PREFIX = "crm_"

Bind = sa.Engine | sa.Connection | sa.URL | str


def version_table(prefix: str = DEFAULT_PREFIX) -> str:
    """The name of the revision table of the tables named ``prefix + name``."""
    return f"{prefix}alembic_version"


def alembic_config(
    connection: sa.Connection | None = None, *, schema: str | None = None, prefix: str = DEFAULT_PREFIX
) -> Config:
    """An Alembic ``Config`` for crmcore's migrations on ``connection`` (for ``alembic.command``:
    ``command.history(alembic_config())``, or ``command.revision(...)`` when writing a new one)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    config.attributes["crmcore_schema"] = schema
    config.attributes["crmcore_prefix"] = prefix
    return config


def head() -> str:
    """The newest revision shipped (equal to ``SCHEMA_VERSION``; a test holds them together)."""
    revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert revision is not None
    return revision


def _display(url: sa.URL) -> str:
    return url.render_as_string(hide_password=True)


@contextmanager
def _connect(bind: Bind, schema: str | None) -> Iterator[sa.Connection]:
    """A connection on ``bind``; an engine made here from a URL is disposed of afterwards."""
    if isinstance(bind, sa.Connection):
        _check_schema(bind, schema)
        yield bind
    elif isinstance(bind, sa.Engine):
        with bind.connect() as connection:
            _check_schema(connection, schema)
            yield connection
    else:
        engine = sa.create_engine(bind)
        try:
            with engine.connect() as connection:
                _check_schema(connection, schema)
                yield connection
        finally:
            engine.dispose()


def _check_schema(connection: sa.Connection, schema: str | None) -> None:
    """On SQLite a schema is an attached database: refuse one the connection does not have
    with what to do (SQLite itself would only say 'unknown database')."""
    if schema is None or connection.dialect.name != "sqlite":
        return
    began = not connection.in_transaction()
    attached = {row[1] for row in connection.exec_driver_sql("PRAGMA database_list")}
    if began:  # end the transaction the PRAGMA began: the caller may begin its own
        connection.rollback()
    if schema not in attached:
        raise no_sqlite_schema(schema)


def _current(connection: sa.Connection, schema: str | None, prefix: str) -> str | None:
    context = MigrationContext.configure(
        connection, opts={"version_table": version_table(prefix), "version_table_schema": schema}
    )
    heads = context.get_current_heads()
    if len(heads) > 1:  # pragma: no cover - crmcore's history has no branches
        raise SchemaVersionError(
            f"{version_table(prefix)} holds several revisions ({', '.join(heads)})", found=None, expected=SCHEMA_VERSION
        )
    return heads[0] if heads else None


def _present_tables(connection: sa.Connection, schema: str | None, prefix: str) -> list[str]:
    """crmcore's tables (for this schema and prefix) that exist in the database."""
    names = set(sa.inspect(connection).get_table_names(schema=schema))
    return [table.name for table in tables(prefix=prefix).metadata.sorted_tables if table.name in names]


def current_version(bind: Bind, *, schema: str | None = None, prefix: str = DEFAULT_PREFIX) -> str | None:
    """The revision of crmcore's tables in the database, ``None`` when there is none."""
    with _connect(bind, schema) as connection:
        return _current(connection, schema, prefix)


def _where(connection: sa.Connection, schema: str | None, prefix: str) -> str:
    place = f"schema {schema!r}, " if schema else ""
    return f"{_display(connection.engine.url)} ({place}table prefix {prefix!r})"


def _upgrade_command(connection: sa.Connection, schema: str | None, prefix: str) -> str:
    words = ["crmcore db upgrade --db", _display(connection.engine.url)]
    if schema:
        words += ["--schema", schema]
    if prefix != DEFAULT_PREFIX:
        words += ["--prefix", prefix]
    return " ".join(words)


def _state(connection: sa.Connection, schema: str | None, prefix: str) -> Literal["empty", "ok"]:
    """``"empty"`` / ``"ok"``, or :class:`SchemaVersionError` saying what is wrong and what to do."""
    found = _current(connection, schema, prefix)
    if found == SCHEMA_VERSION:
        return "ok"
    where = _where(connection, schema, prefix)
    run = _upgrade_command(connection, schema, prefix)
    if found is None:
        present = _present_tables(connection, schema, prefix)
        if not present:
            return "empty"
        raise SchemaVersionError(
            f"{where} holds crmcore tables ({', '.join(present)}) but no revision in "
            f"{version_table(prefix)}: they were not made by crmcore's migrations; crmcore "
            f"{SCHEMA_VERSION} expects revision {SCHEMA_VERSION}. Move them away, then run `{run}`",
            found=None,
            expected=SCHEMA_VERSION,
        )
    script = ScriptDirectory.from_config(alembic_config())
    known = {revision.revision for revision in script.walk_revisions()}
    if found in known:
        message = (
            f"{where} holds crmcore tables at revision {found}, this crmcore expects revision "
            f"{SCHEMA_VERSION}: run `{run}`"
        )
    else:
        message = (
            f"{where} holds crmcore tables at revision {found}, which this crmcore does not know "
            f"(it expects revision {SCHEMA_VERSION}): the database was upgraded by a newer crmcore; "
            f"upgrade crmcore, or restore a backup and run `{run}`"
        )
    raise SchemaVersionError(message, found=found, expected=SCHEMA_VERSION)


def check_version(bind: Bind, *, schema: str | None = None, prefix: str = DEFAULT_PREFIX) -> Literal["empty", "ok"]:
    """``"ok"`` when crmcore's tables are at ``SCHEMA_VERSION``, ``"empty"`` when there are none;
    raises :class:`SchemaVersionError` (what it found, what it expects, what to run) otherwise."""
    with _connect(bind, schema) as connection:
        return _state(connection, schema, prefix)


def _lock(connection: sa.Connection, schema: str | None, prefix: str) -> None:
    """Serialise upgrades of the same tables (the lock ends with the transaction)."""
    dialect = connection.dialect.name
    if dialect == "postgresql":
        key = zlib.crc32(f"crmcore-migrate:{schema or ''}:{prefix}".encode()) - 2**31  # a signed int4
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
    elif dialect == "sqlite":
        # pysqlite opens a transaction before DML only, so DDL would autocommit statement by
        # statement; an explicit BEGIN IMMEDIATE makes the upgrade atomic and takes the write lock.
        dbapi_connection = connection.connection.dbapi_connection
        if isinstance(dbapi_connection, sqlite3.Connection) and not dbapi_connection.in_transaction:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


def _run(bind: sa.Engine | sa.URL | str, schema: str | None, prefix: str, action: str) -> str | None:
    with _connect(bind, schema) as connection, connection.begin():
        _lock(connection, schema, prefix)
        if schema and connection.dialect.name == "postgresql":
            connection.execute(sa.schema.CreateSchema(schema, if_not_exists=True))
        config = alembic_config(connection, schema=schema, prefix=prefix)
        if action == "upgrade":
            _state_before_upgrade(connection, schema, prefix)
            command.upgrade(config, "head")
        else:
            try:
                command.downgrade(config, action)
            except CommandError as error:
                raise SchemaVersionError(str(error), found=_current(connection, schema, prefix), expected=SCHEMA_VERSION) from None
        return _current(connection, schema, prefix)


def _state_before_upgrade(connection: sa.Connection, schema: str | None, prefix: str) -> None:
    """Refuse what an upgrade cannot fix: foreign tables in the way, an unknown (newer) revision."""
    try:
        _state(connection, schema, prefix)
    except SchemaVersionError as error:
        if error.found is None:
            raise
        known = {revision.revision for revision in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
        if error.found not in known:
            raise


def upgrade(bind: sa.Engine | sa.URL | str, *, schema: str | None = None, prefix: str = DEFAULT_PREFIX) -> str:
    """Bring crmcore's tables (``prefix + name``, in ``schema``) to ``SCHEMA_VERSION``, creating
    them (and, on PostgreSQL, the schema) in an empty database; a no-op when they are there.
    Returns the revision the database is at."""
    revision = _run(bind, schema, prefix, "upgrade")
    assert revision is not None
    return revision


def downgrade(
    bind: sa.Engine | sa.URL | str, revision: str = "base", *, schema: str | None = None, prefix: str = DEFAULT_PREFIX
) -> str | None:
    """Take crmcore's tables back to ``revision`` (``"base"``: drop them all). Returns the revision
    the database is at, ``None`` at base."""
    return _run(bind, schema, prefix, revision)
