"""`crmcore kpi`, `funnel`, `leaderboard`, `capacity` (SPEC §8, §11) on a SQLite file."""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import crmcore
from crmcore import Engine, SqlStore
from crmcore.cli import main
from tests.conftest import PG_URL_ENV, no_postgres
from tests.test_kpi import SMALL_RULES, STORY

TARGETS = """
targets:
  - {metric: ftd_count, per: agent, period: month, value: 2}
  - {metric: ftd_count, per: agent, period: week, value: 1, desk: general}
"""


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("kpi-cli")
    url = f"sqlite:///{folder}/crm.db"
    store = SqlStore(url)
    engine = Engine(crmcore.loads(SMALL_RULES), store=store)
    for event in STORY:
        assert engine.handle(event).handled
    store.close()
    (folder / "rules.yaml").write_text(SMALL_RULES + TARGETS)
    return url


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


def as_json(*argv: str) -> Any:
    code, out, err = run(*argv, "--format", "json")
    assert code == 0, err
    return json.loads(out, parse_float=Decimal)


def test_kpi_json_has_exact_sums_and_every_kpi(db: str) -> None:
    [row] = as_json("kpi", "--db", db, "--from", "2026-02-01", "--to", "2026-03-01")
    assert row["registrations"] == 4 and row["ftd_count"] == 2
    assert row["net_deposits"] == Decimal("1000.25") and row["clv_net_deposits"] == Decimal("500.125")
    assert set(crmcore.kpi.METRICS) <= set(row)


def test_kpi_by_agent_with_chosen_metrics(db: str) -> None:
    rows = as_json("kpi", "--db", db, "--from", "2026-02-01", "--to", "2026-03-01", "--by", "agent",
                   "--metrics", "ftd_count,net_deposits")
    assert rows == [
        {"agent": "a1", "ftd_count": 1, "net_deposits": Decimal("1000.50")},
        {"agent": "a2", "ftd_count": 1, "net_deposits": 100},
        {"agent": "r1", "ftd_count": 0, "net_deposits": Decimal("-100.25")},
    ]


def test_kpi_csv_and_table(db: str) -> None:
    code, out, _ = run("kpi", "--db", db, "--from", "2026-02-01", "--to", "2026-03-01", "--by", "desk",
                       "--metrics", "revenue", "--format", "csv")
    assert code == 0
    assert out.splitlines() == ["desk,revenue", "retention,75.40", "sales,0"]
    code, out, _ = run("kpi", "--db", db, "--from", "2026-02-01", "--to", "2026-03-01")
    assert code == 0 and "ftd_conversion_rate" in out and "0.5000" in out


def test_as_of_defaults_to_the_latest_event_and_can_be_given(db: str) -> None:
    argv = ("kpi", "--db", db, "--from", "2026-02-01", "--to", "2026-03-01", "--metrics", "ftd_conversion_rate")
    assert as_json(*argv)[0]["ftd_conversion_rate"] == Decimal("0.5")
    assert as_json(*argv, "--as-of", "2026-02-06T00:00:00Z")[0]["ftd_conversion_rate"] == Decimal("0.25")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["kpi", "--from", "2026-02-31", "--to", "2026-03-01"], "--from '2026-02-31' is not an ISO 8601 time"),
        (["kpi", "--from", "2026-02-01", "--to", "soon"], "--to 'soon' is not an ISO 8601 time"),
        (["kpi", "--from", "2026-03-01", "--to", "2026-02-01"], "empty period"),
        (["kpi", "--from", "2026-02-01", "--to", "2026-03-01", "--by", "planet"], "unknown grouping 'planet'"),
        (["kpi", "--from", "2026-02-01", "--to", "2026-03-01", "--metrics", "ftds"], "unknown metric 'ftds'"),
        (["funnel", "--from", "2026-02-01", "--to", "2026-03-01", "--by", "planet"], "unknown grouping 'planet'"),
        (["leaderboard", "--from", "2026-02-01", "--to", "2026-03-01", "--metric", "fame"], "unknown metric 'fame'"),
        (["capacity", "--desk", "nowhere"], "unknown desk 'nowhere'"),
    ],
)
def test_bad_values_are_one_line_errors_naming_them(db: str, argv: list[str], message: str) -> None:
    code, out, err = run(*argv, "--db", db)
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err


def test_funnel_by_cohort(db: str) -> None:
    rows = as_json("funnel", "--db", db, "--from", "2026-01-01", "--to", "2026-03-01", "--cohort", "month")
    assert [(r["cohort"], r["registered"], r["funded"]) for r in rows] == [("2026-01", 2, 2), ("2026-02", 4, 2)]
    assert rows[1]["funded_overall"] == Decimal("0.5")


def test_leaderboard_ranks_with_targets_from_the_rules(db: str) -> None:
    rules = str(Path(db.removeprefix("sqlite:///")).parent / "rules.yaml")
    rows = as_json("leaderboard", "--db", db, "--from", "2026-02-01", "--to", "2026-03-01",
                   "--metric", "ftd_count", "--rules", rules)
    assert [(r["rank"], r["agent"], r["ftd_count"], r["attainment"]) for r in rows] == [
        (1, "a1", 1, Decimal("0.5")), (2, "a2", 1, Decimal("0.5")),
        (3, "g1", 0, Decimal("0.0")), (4, "r1", 0, Decimal("0.0")),
    ]
    assert rows[2]["target"] == 4  # g1's desk has a weekly target of 1: 28 days = 4 weeks


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def ran(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a database that `crmcore run` filled with the story under rules with
    targets (PostgreSQL: a schema of its own, through the connection's search_path)."""
    (tmp_path / "rules.yaml").write_text(SMALL_RULES + TARGETS)
    (tmp_path / "story.jsonl").write_text("".join(json.dumps(event) + "\n" for event in STORY))
    schema = f"crm_cli_targets_{os.getpid()}"
    engine = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/crm.db"
    else:
        base = os.environ.get(PG_URL_ENV)
        if not base:
            no_postgres("the CLI tests on PostgreSQL")
        engine = sa.create_engine(base)
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        url = sa.make_url(base).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False)
    code, _, err = run("run", str(tmp_path / "rules.yaml"), "--events", str(tmp_path / "story.jsonl"), "--db", url)
    assert code == 0, err
    yield url
    if engine is not None:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        engine.dispose()


def test_leaderboard_without_rules_uses_the_targets_of_the_rules_run_with(ran: str) -> None:
    rows = as_json("leaderboard", "--db", ran, "--from", "2026-02-01", "--to", "2026-03-01", "--metric", "ftd_count")
    assert [(r["agent"], r["ftd_count"], r["target"], r["attainment"]) for r in rows] == [
        ("a1", 1, 2, Decimal("0.5")), ("a2", 1, 2, Decimal("0.5")),
        ("g1", 0, 4, Decimal("0.0")), ("r1", 0, 2, Decimal("0.0")),  # g1's desk: weekly 1, 28 days
    ]


def test_leaderboard_rules_replace_the_stored_targets(ran: str, tmp_path: Path) -> None:
    (tmp_path / "other.yaml").write_text(SMALL_RULES + "targets:\n  - {metric: ftd_count, per: agent, period: month, value: 4}\n")
    rows = as_json("leaderboard", "--db", ran, "--from", "2026-02-01", "--to", "2026-03-01", "--metric", "ftd_count",
                   "--rules", str(tmp_path / "other.yaml"))
    assert [(r["agent"], r["target"]) for r in rows] == [("a1", 4), ("a2", 4), ("g1", 4), ("r1", 4)]


def test_report_without_rules_draws_the_stored_targets(ran: str, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    code, _, err = run("report", "--db", ran, "--from", "2026-02-01", "--to", "2026-03-01", "-o", str(page))
    assert code == 0, err
    board = page.read_text().split('<table id="leaderboard">')[1].split("</table>")[0]
    assert board.count('class="meter"') == 3 and "50%" in board  # a1 and a2 at 1 of 2, g1


def test_the_reports_ftd_leaderboard_lists_the_sales_agents_only(ran: str, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    code, _, err = run("report", "--db", ran, "--from", "2026-02-01", "--to", "2026-03-01", "-o", str(page))
    assert code == 0, err
    board = page.read_text().split('<table id="leaderboard">')[1].split("</table>")[0]
    assert re.findall(r"<tr><td class=n>(\d+)</td><td>(\w+)</td>", board) == [("1", "a1"), ("2", "a2"), ("3", "g1")]


def test_capacity_per_desk(db: str) -> None:
    rows = as_json("capacity", "--db", db, "--desk", "retention", "--as-of", "2026-02-12T00:00:00Z")
    # c1 and c2 arrived in the 7 days before: 2/7 a day; 5 open + 30 x 2/7 = 13.57 -> 2 agents at 80% of 10
    assert rows == [{"desk": "retention", "agents": 1, "open": 5, "capacity": 10, "utilisation": Decimal("0.5"),
                     "incoming_per_day": Decimal(str(2 / 7)), "projected_open": Decimal(str(float(5 + Decimal(60) / 7))),
                     "agents_needed": 2}]


def test_capacity_defaults_to_the_latest_event_and_lists_every_desk(db: str) -> None:
    rows = as_json("capacity", "--db", db)
    assert [(r["desk"], r["open"], r["incoming_per_day"]) for r in rows] == [
        ("general", 1, Decimal(str(1 / 7))), ("retention", 5, 0), ("sales", 1, Decimal(str(1 / 7))),
    ]
