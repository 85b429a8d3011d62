"""The PostgreSQL fixture reaches a real server (started by ./scripts/test)."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text


def test_select_one(pg_engine: Engine) -> None:
    with pg_engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar_one() == 1


def test_server_version_encoding_and_collation(pg_engine: Engine) -> None:
    with pg_engine.connect() as conn:
        version_num = int(conn.execute(text("SHOW server_version_num")).scalar_one())
        encoding = conn.execute(text("SHOW server_encoding")).scalar_one()
        # `SHOW lc_collate` is gone in PostgreSQL 16+; pg_database has it everywhere.
        collation = conn.execute(
            text("SELECT datcollate FROM pg_database WHERE datname = current_database()")
        ).scalar_one()
        database = conn.execute(text("SELECT current_database()")).scalar_one()
    assert version_num >= 120000
    assert encoding == "UTF8"
    assert isinstance(collation, str) and collation
    assert database
    assert pg_engine.dialect.name == "postgresql"
    assert pg_engine.dialect.server_version_info is not None


def test_round_trip_in_rolled_back_transaction(pg_engine: Engine) -> None:
    with pg_engine.connect() as conn, conn.begin() as tx:
        conn.execute(
            text("CREATE TEMPORARY TABLE fixture_probe (id serial PRIMARY KEY, name text)")
        )
        conn.execute(
            text("INSERT INTO fixture_probe (name) VALUES (:a), (:b)"),
            {"a": "Zürich € lead", "b": "直客"},
        )
        rows = conn.execute(text("SELECT name FROM fixture_probe ORDER BY id")).scalars().all()
        tx.rollback()
    assert rows == ["Zürich € lead", "直客"]


def test_sql_engine_gives_each_dialect(sql_engine: Engine, request: pytest.FixtureRequest) -> None:
    wanted = request.node.callspec.params["sql_engine"]
    assert sql_engine.dialect.name == wanted
    with sql_engine.connect() as conn:
        assert conn.execute(text("SELECT 1 + 1")).scalar_one() == 2
