"""Shared test fixtures: database engines and Hypothesis profiles.

``pg_engine`` needs a PostgreSQL server named by ``CRMCORE_TEST_PG_URL``;
``./scripts/test`` starts a throwaway one and sets it. Without it, PostgreSQL
tests skip locally and fail under CI.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from sqlalchemy import Engine, Table, create_engine
from sqlalchemy.pool import StaticPool

from crmcore import MemoryStore, RuleSet, Store, load_rules

PG_URL_ENV = "CRMCORE_TEST_PG_URL"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}


def no_postgres(what: str = "PostgreSQL tests") -> None:
    """Without ``CRMCORE_TEST_PG_URL``: fail under CI (PostgreSQL tests must run there), else
    skip, saying how to get a server."""
    if _in_ci():
        pytest.fail(f"{PG_URL_ENV} is not set but CI is: run the suite through ./scripts/test, "
                    "which starts a throwaway PostgreSQL server", pytrace=False)
    pytest.skip(f"{what} need {PG_URL_ENV}; ./scripts/test starts a throwaway server")


settings.register_profile("ci", max_examples=200, deadline=None)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile("ci" if _in_ci() else "dev")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses ``pg_engine`` with ``postgres``."""
    for item in items:
        if "pg_engine" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(scope="session")
def pg_engine() -> Iterator[Engine]:
    url = os.environ.get(PG_URL_ENV)
    if not url:
        no_postgres()
    engine = create_engine(url, pool_pre_ping=True)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def sqlite_engine() -> Iterator[Engine]:
    engine = create_engine(
        "sqlite+pysqlite://",
        poolclass=StaticPool,
        connect_args={"check_same_thread": False},
    )
    yield engine
    engine.dispose()


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def sql_engine(request: pytest.FixtureRequest) -> Engine:
    """The same test once on SQLite and once on PostgreSQL."""
    name = "pg_engine" if request.param == "postgresql" else "sqlite_engine"
    engine: Engine = request.getfixturevalue(name)
    return engine


@pytest.fixture(scope="module")
def sql_tables() -> Iterator[dict[str, tuple[Engine, Table]]]:
    """Tables a test module creates once per engine (keyed by dialect), dropped when it ends."""
    tables: dict[str, tuple[Engine, Table]] = {}
    yield tables
    for engine, table in tables.values():
        table.drop(engine, checkfirst=True)


DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def spec_rules() -> RuleSet:
    """The example rule set of SPEC §2, verbatim."""
    return load_rules(DATA / "spec_rules.yaml")


# --- stores ------------------------------------------------------------------------------------
# The engine's tests are written once and run on every Store. SQL stores share one database per
# session (a temporary SQLite file; a schema of the test PostgreSQL server) and start empty.
STORES = ["memory", "sqlite", "postgresql"]
_SQL_ENGINES: dict[str, Engine] = {}
_PG_SCHEMA = f"crm_test_{os.getpid()}"


def _sql_engine(kind: str) -> tuple[Engine, str | None]:
    if kind not in _SQL_ENGINES:
        if kind == "sqlite":
            import tempfile

            from crmcore.storage.sql import _create_engine

            folder = tempfile.mkdtemp(prefix="crmcore-test-")
            _SQL_ENGINES[kind] = _create_engine(f"sqlite:///{folder}/store.db")
        else:
            url = os.environ.get(PG_URL_ENV)
            if not url:
                no_postgres("PostgreSQL store tests")
            engine = create_engine(url, pool_pre_ping=True)
            with engine.begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{_PG_SCHEMA}" CASCADE')
                conn.exec_driver_sql(f'CREATE SCHEMA "{_PG_SCHEMA}"')
            _SQL_ENGINES[kind] = engine
    return _SQL_ENGINES[kind], (_PG_SCHEMA if kind == "postgresql" else None)


def make_store(kind: str) -> Store:
    """A new, empty store of ``kind``."""
    if kind == "memory":
        return MemoryStore()
    from crmcore.storage.sql import SqlStore

    engine, schema = _sql_engine(kind)
    store = SqlStore(engine, schema=schema)
    with engine.begin() as conn:
        names = [t for t in store.t.metadata.sorted_tables if t is not store.t.locks]
        for table in reversed(names):
            conn.execute(table.delete())
    return store


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    engine = _SQL_ENGINES.pop("postgresql", None)
    if engine is not None:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{_PG_SCHEMA}" CASCADE')
        engine.dispose()
    for engine in _SQL_ENGINES.values():
        engine.dispose()


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest) -> Store:
    """A fresh, empty store of each kind."""
    return make_store(request.param)
