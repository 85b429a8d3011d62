"""crmcore's Alembic migrations: from empty they create exactly the tables of ``schema.py``,
per schema and prefix, on SQLite and PostgreSQL; ``crmcore db`` runs them."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from crmcore.cli import main
from crmcore.rules.diagnostics import CrmError
from crmcore.storage import migrate
from crmcore.storage.migrate import SchemaVersionError
from crmcore.storage.schema import SCHEMA_VERSION, tables


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'crm.db'}"


@pytest.fixture
def pg_schema(pg_engine: sa.Engine) -> Iterator[str]:
    """A fresh schema of its own for one test, dropped (CASCADE) at the end."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with pg_engine.begin() as connection:
        connection.execute(sa.schema.CreateSchema(name))
    yield name
    with pg_engine.begin() as connection:
        connection.execute(sa.schema.DropSchema(name, cascade=True))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[sa.Engine, str | None]]:
    """An empty database: a SQLite file, or a fresh schema on PostgreSQL (the tables' schema)."""
    if request.param == "sqlite":
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'crm.db'}")
        yield engine, None
        engine.dispose()
    else:
        pg_engine: sa.Engine = request.getfixturevalue("pg_engine")
        yield pg_engine, request.getfixturevalue("pg_schema")


def _index_shape(index: dict[str, Any]) -> tuple[Any, ...]:
    options = index.get("dialect_options", {})
    where = options.get("postgresql_where") or options.get("sqlite_where")
    return (
        index["name"], tuple(index["column_names"]), bool(index["unique"]),
        " ".join(str(where).split()).strip("()") if where is not None else None,
    )


def _shape(engine: sa.Engine, schema: str | None, names: list[str]) -> dict[str, Any]:
    """What the database says about these tables: columns (name, type, nullable, pk), indexes."""
    inspector = sa.inspect(engine)
    shape: dict[str, Any] = {}
    for name in names:
        columns = [
            (c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(name, schema=schema)
        ]
        indexes = sorted(_index_shape(ix) for ix in inspector.get_indexes(name, schema=schema))
        pk = inspector.get_pk_constraint(name, schema=schema)["constrained_columns"]
        uniques = sorted(tuple(u["column_names"]) for u in inspector.get_unique_constraints(name, schema=schema))
        shape[name] = (columns, indexes, pk, uniques)
    return shape


def _reference(engine: sa.Engine, prefix: str) -> dict[str, Any]:
    """The same tables made by ``metadata.create_all`` from ``schema.py`` in a schema of their own."""
    if engine.dialect.name == "sqlite":
        reference = sa.create_engine("sqlite://")
        t = tables(prefix=prefix)
        t.metadata.create_all(reference)
        return _shape(reference, None, [table.name for table in t.metadata.sorted_tables])
    schema = f"ref_{uuid.uuid4().hex[:12]}"
    t = tables(sa.MetaData(schema=schema), prefix=prefix)
    with engine.begin() as connection:
        connection.execute(sa.schema.CreateSchema(schema))
        t.metadata.create_all(connection)
    try:
        return _shape(engine, schema, [table.name for table in t.metadata.sorted_tables])
    finally:
        with engine.begin() as connection:
            connection.execute(sa.schema.DropSchema(schema, cascade=True))


def _table_names(engine: sa.Engine, schema: str | None) -> set[str]:
    return set(sa.inspect(engine).get_table_names(schema=schema))


def test_head_is_schema_version() -> None:
    assert migrate.head() == SCHEMA_VERSION
    assert issubclass(SchemaVersionError, CrmError)


@pytest.mark.parametrize("prefix", ["crm_", "acme_crm_"])
def test_upgrade_from_empty_creates_exactly_the_tables(db: tuple[sa.Engine, str | None], prefix: str) -> None:
    engine, schema = db
    assert migrate.check_version(engine, schema=schema, prefix=prefix) == "empty"
    assert migrate.current_version(engine, schema=schema, prefix=prefix) is None

    assert migrate.upgrade(engine, schema=schema, prefix=prefix) == SCHEMA_VERSION

    expected = {table.name for table in tables(prefix=prefix).metadata.sorted_tables}
    assert _table_names(engine, schema) == expected | {f"{prefix}alembic_version"}
    made = _shape(engine, schema, sorted(expected))
    assert made == _reference(engine, prefix)
    # the partial indexes are there, partial
    indexes = {ix[0]: ix for ix in made[f"{prefix}assignments"][1]}
    assert indexes[f"ix_{prefix}assignments_open_client"][2:] == (True, "ended_at IS NULL")
    assert {ix[0]: ix for ix in made[f"{prefix}outbox"][1]}[f"ix_{prefix}outbox_due"][3] == "delivered_at IS NULL"

    assert migrate.current_version(engine, schema=schema, prefix=prefix) == SCHEMA_VERSION
    assert migrate.check_version(engine, schema=schema, prefix=prefix) == "ok"
    locks = tables(sa.MetaData(schema=schema), prefix=prefix).locks
    with engine.connect() as connection:
        assert connection.execute(sa.select(locks.c.name)).scalars().all() == ["routing"]


def test_upgrade_twice_is_a_no_op(db: tuple[sa.Engine, str | None]) -> None:
    engine, schema = db
    migrate.upgrade(engine, schema=schema)
    before = _shape(engine, schema, sorted(_table_names(engine, schema)))
    assert migrate.upgrade(engine, schema=schema) == SCHEMA_VERSION
    assert _shape(engine, schema, sorted(_table_names(engine, schema))) == before
    locks = tables(sa.MetaData(schema=schema)).locks
    with engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(locks)).scalar_one() == 1


def test_downgrade_drops_them(db: tuple[sa.Engine, str | None]) -> None:
    engine, schema = db
    migrate.upgrade(engine, schema=schema)
    assert migrate.downgrade(engine, schema=schema) is None
    assert _table_names(engine, schema) <= {"crm_alembic_version"}
    assert migrate.check_version(engine, schema=schema) == "empty"
    assert migrate.upgrade(engine, schema=schema) == SCHEMA_VERSION


def _stamp(engine: sa.Engine, schema: str | None, revision: str, prefix: str = "crm_") -> None:
    version = sa.Table(f"{prefix}alembic_version", sa.MetaData(schema=schema), autoload_with=engine)
    with engine.begin() as connection:
        connection.execute(version.update().values(version_num=revision))


def test_another_revision_is_refused_with_what_to_do(db: tuple[sa.Engine, str | None]) -> None:
    engine, schema = db
    migrate.upgrade(engine, schema=schema)
    _stamp(engine, schema, "0000")
    assert migrate.current_version(engine, schema=schema) == "0000"
    with pytest.raises(SchemaVersionError) as caught:
        migrate.check_version(engine, schema=schema)
    message = str(caught.value)
    assert "revision 0000" in message and f"expects revision {SCHEMA_VERSION}" in message
    assert "crmcore db upgrade --db " in message
    if schema:
        assert f"--schema {schema}" in message
    assert (caught.value.found, caught.value.expected) == ("0000", SCHEMA_VERSION)
    # a revision this crmcore does not know: an upgrade cannot fix it either
    with pytest.raises(SchemaVersionError, match="does not know"):
        migrate.upgrade(engine, schema=schema)


def test_tables_without_revision_are_refused(db: tuple[sa.Engine, str | None]) -> None:
    engine, schema = db
    with engine.begin() as connection:
        tables(sa.MetaData(schema=schema)).clients.create(connection)
    with pytest.raises(SchemaVersionError, match=r"crm_clients\) but no revision in crm_alembic_version"):
        migrate.check_version(engine, schema=schema)
    with pytest.raises(SchemaVersionError):
        migrate.upgrade(engine, schema=schema)


def test_a_failed_upgrade_leaves_nothing(db: tuple[sa.Engine, str | None]) -> None:
    """An upgrade is one transaction: a clash half-way (a host table holding the name of one of
    crmcore's indexes) leaves no crmcore table and no revision behind."""
    engine, schema = db
    clash = sa.Table("ix_crm_queue_items_queue", sa.MetaData(schema=schema), sa.Column("id", sa.Integer))
    clash.create(engine)
    with pytest.raises(sa.exc.DatabaseError):
        migrate.upgrade(engine, schema=schema)
    assert _table_names(engine, schema) == {"ix_crm_queue_items_queue"}
    assert migrate.check_version(engine, schema=schema) == "empty"


def test_prefixes_and_the_hosts_alembic_version_are_independent(db: tuple[sa.Engine, str | None]) -> None:
    engine, schema = db
    host = sa.MetaData(schema=schema)
    host_version = sa.Table("alembic_version", host, sa.Column("version_num", sa.String(32), primary_key=True))
    host_clients = sa.Table("clients", host, sa.Column("id", sa.Integer, primary_key=True))
    host.create_all(engine)
    with engine.begin() as connection:
        connection.execute(host_version.insert().values(version_num="host_rev_42"))
        connection.execute(host_clients.insert().values(id=7))

    migrate.upgrade(engine, schema=schema, prefix="a_")
    assert migrate.check_version(engine, schema=schema, prefix="b_") == "empty"
    migrate.upgrade(engine, schema=schema, prefix="b_")
    _stamp(engine, schema, "0000", prefix="a_")  # one prefix's revision does not touch the other's
    assert migrate.current_version(engine, schema=schema, prefix="b_") == SCHEMA_VERSION
    with pytest.raises(SchemaVersionError):
        migrate.check_version(engine, schema=schema, prefix="a_")

    with engine.connect() as connection:
        assert connection.execute(sa.select(host_version.c.version_num)).scalars().all() == ["host_rev_42"]
        assert connection.execute(sa.select(host_clients.c.id)).scalars().all() == [7]
    assert migrate.current_version(engine, schema=schema, prefix="") == "host_rev_42"  # its own table
    names = _table_names(engine, schema)
    assert {"alembic_version", "clients", "a_clients", "b_clients", "a_alembic_version", "b_alembic_version"} <= names
    assert not any(name.startswith("crm_") for name in names)


@pytest.mark.postgres
def test_a_schema_of_its_own_on_postgresql(pg_engine: sa.Engine, pg_schema: str) -> None:
    """crmcore in schema S (created by the upgrade when missing) leaves the host's public tables
    and its own ``alembic_version`` alone, and the default-schema check sees nothing."""
    crm = f"{pg_schema}_crm"
    host = sa.MetaData(schema=pg_schema)
    host_version = sa.Table("alembic_version", host, sa.Column("version_num", sa.String(32), primary_key=True))
    host.create_all(pg_engine)
    with pg_engine.begin() as connection:
        connection.execute(host_version.insert().values(version_num="host_rev_1"))
    try:
        assert migrate.upgrade(pg_engine, schema=crm) == SCHEMA_VERSION
        assert migrate.check_version(pg_engine, schema=crm) == "ok"
        assert migrate.check_version(pg_engine, schema=pg_schema) == "empty"
        assert _table_names(pg_engine, pg_schema) == {"alembic_version"}
        assert "crm_clients" in _table_names(pg_engine, crm)
        with pg_engine.connect() as connection:
            assert connection.execute(sa.select(host_version.c.version_num)).scalar_one() == "host_rev_1"
    finally:
        with pg_engine.begin() as connection:
            connection.execute(sa.schema.DropSchema(crm, cascade=True, if_exists=True))


@pytest.mark.postgres
def test_concurrent_upgrades_on_postgresql(pg_engine: sa.Engine, pg_schema: str) -> None:
    """Workers starting together: one creates the tables, the others find them at head."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: migrate.upgrade(pg_engine, schema=pg_schema), range(4)))
    assert results == [SCHEMA_VERSION] * 4
    locks = tables(sa.MetaData(schema=pg_schema)).locks
    with pg_engine.connect() as connection:
        assert connection.execute(sa.select(locks.c.name)).scalars().all() == ["routing"]


# --- crmcore db ----------------------------------------------------------------------------------


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


def test_cli_upgrade_then_version(sqlite_url: str) -> None:
    code, out, _ = run("db", "upgrade", "--db", sqlite_url)
    assert (code, out) == (0, f"{sqlite_url}: upgraded from an empty database to revision {SCHEMA_VERSION}\n")
    code, out, _ = run("db", "upgrade", "--db", sqlite_url)
    assert (code, out) == (0, f"{sqlite_url}: already at revision {SCHEMA_VERSION}\n")
    code, out, err = run("db", "version", "--db", sqlite_url)
    assert (code, out, err) == (0, f"current:  {SCHEMA_VERSION}\nexpected: {SCHEMA_VERSION}\n", "")
    assert migrate.check_version(sqlite_url) == "ok"


def test_cli_version_of_other_states(sqlite_url: str, tmp_path: Path) -> None:
    code, _, err = run("db", "version", "--db", f"sqlite:///{tmp_path / 'nope.db'}")
    assert code == 1 and "no such database file" in err
    assert not (tmp_path / "nope.db").exists()

    sa.create_engine(sqlite_url).dispose()
    with sa.create_engine(sqlite_url).begin() as connection:
        connection.exec_driver_sql("CREATE TABLE host (id INTEGER)")
    code, out, _ = run("db", "version", "--db", sqlite_url)
    assert code == 1 and out.startswith("current:  none\n") and "crmcore db upgrade --db" in out

    run("db", "upgrade", "--db", sqlite_url, "--prefix", "x_")
    engine = sa.create_engine(sqlite_url)
    _stamp(engine, None, "0000", prefix="x_")
    engine.dispose()
    code, out, err = run("db", "version", "--db", sqlite_url, "--prefix", "x_")
    assert code == 1 and out.startswith("current:  0000\n")
    assert f"crmcore db upgrade --db {sqlite_url} --prefix x_" in err
    code, _, err = run("db", "upgrade", "--db", sqlite_url, "--prefix", "x_")
    assert code == 1 and err.startswith("crmcore db upgrade: error: ") and "does not know" in err


def test_cli_bad_urls() -> None:
    code, _, err = run("db", "upgrade", "--db", "not a url")
    assert code == 1 and "is not a database URL" in err
    code, _, err = run("db", "version", "--db", "nosuchdb://x")
    assert code == 1 and "nosuchdb" in err


@pytest.mark.postgres
def test_cli_on_postgresql_with_a_schema(pg_engine: sa.Engine, pg_schema: str) -> None:
    url = pg_engine.url.render_as_string(hide_password=False)
    code, out, err = run("db", "upgrade", "--db", url, "--schema", pg_schema, "--prefix", "p_")
    assert code == 0, err
    assert out.endswith(f"upgraded from an empty database to revision {SCHEMA_VERSION}\n")
    code, out, _ = run("db", "version", "--db", url, "--schema", pg_schema, "--prefix", "p_")
    assert (code, out) == (0, f"current:  {SCHEMA_VERSION}\nexpected: {SCHEMA_VERSION}\n")
    assert "p_clients" in _table_names(pg_engine, pg_schema)


@pytest.mark.postgres
def test_cli_commands_use_the_schema_and_prefix_db_upgrade_made_on_postgresql(pg_engine: sa.Engine, pg_schema: str) -> None:
    examples = Path(__file__).parents[1] / "examples"
    url = pg_engine.url.render_as_string(hide_password=False)
    place = ("--db", url, "--schema", pg_schema, "--prefix", "p_")
    assert run("db", "upgrade", *place)[0] == 0
    code, _, err = run("run", str(examples / "rules"), "--events", str(examples / "events" / "events.jsonl"), *place)
    assert code == 0, err
    code, out, err = run("kpi", *place, "--from", "2026-01-01", "--to", "2027-01-01", "--metrics", "registrations",
                         "--format", "json")
    assert (code, out) == (0, '[\n  {\n    "registrations": 8\n  }\n]\n'), err
    assert {"p_clients", "p_events"} <= _table_names(pg_engine, pg_schema)
    assert not {name for name in _table_names(pg_engine, pg_schema) if name.startswith("crm_")}


@pytest.mark.parametrize("prefix", ["", "1crm_", "crm-", "crm prefix", "x" * 25])
def test_a_prefix_that_cannot_name_tables_is_refused_up_front(prefix: str) -> None:
    from crmcore.storage.schema import tables

    with pytest.raises(ValueError, match="table prefix"):
        tables(prefix=prefix)
    assert tables(prefix="x" * 24).assignments.name == "x" * 24 + "assignments"
