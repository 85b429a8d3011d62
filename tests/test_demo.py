"""The demo broker: the generator's events are valid, seeded and cover every kind; ``crmcore
demo`` runs end to end on SQLite and writes the report; ``crmcore report`` reads a database."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import pytest

import crmcore
from crmcore.cli import main
from crmcore.demo import MONTH, demo_rules
from crmcore.demo.generate import END, events
from crmcore.events import parse_event


def test_the_generator_is_seeded_and_every_event_is_valid_for_the_demo_rules() -> None:
    rules = demo_rules()
    first = list(events(300, seed=3))
    assert first == list(events(300, seed=3))
    assert first != list(events(300, seed=4))
    kinds = Counter(event["type"] for event in first)
    for kind in ("ib_updated", "campaign_cost", "agent_updated", "client_registered", "kyc_submitted", "kyc_approved", "kyc_rejected",
                 "email_opened", "email_clicked", "login", "deposit", "withdrawal", "trade", "account_snapshot", "contact"):
        assert kinds[kind] > 0, kind
    assert kinds["client_registered"] == 300
    ats = [event["at"] for event in first]
    assert ats == sorted(ats) and max(ats) <= END.isoformat().replace("+00:00", "Z")
    for event in first:
        if event["type"] == "contact":
            event = {**event, "agent_id": "a01"}  # the driver names the caller
        parse_event(event, rules)
    statuses = Counter((e["type"], e.get("status")) for e in first if e["type"] in ("deposit", "withdrawal"))
    assert statuses[("deposit", "failed")] and statuses[("withdrawal", "failed")]


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


def test_crmcore_demo_runs_end_to_end_and_writes_the_report(tmp_path: Path) -> None:
    db, report = tmp_path / "demo.db", tmp_path / "report.html"
    code, out, _ = run("demo", "--clients", "60", "--db", f"sqlite:///{db}", "-o", str(report))
    assert code == 0, out
    assert "dead-lettered 0" in out
    assert "clients by stage:" in out and "funded" in out
    assert "retention and sales queues at 2026-03-01" in out
    page = report.read_text()
    assert page.startswith("<!DOCTYPE html>") and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    for part in ('id="kpi-tiles"', 'id="funnel-chart"', 'id="cohort-chart"', 'id="flow-chart"', 'id="leaderboard"',
                 'id="capacity"', 'id="kpis-by-desk"', 'id="acquisition"', 'id="queues"'):
        assert part in page, part
    assert "FTD funnel (registered in the 90 days before the period end)" in page  # as the terminal says
    for heading in ("funnel of the clients registered in the 90 days", "KPIs by desk, February 2026", "acquisition by source",
                    "leaderboard: FTDs per sales agent, February 2026", "capacity per desk at 2026-03-01"):
        assert heading in out, heading
    # the database is there for the views and the report command
    store = crmcore.SqlStore(f"sqlite:///{db}")
    assert sum(1 for _ in store.clients()) == 60
    assert store.queue_items()
    again = tmp_path / "again.html"
    code, out, _ = run("report", "--db", f"sqlite:///{db}", "-o", str(again))
    assert code == 0 and 'id="funnel-chart"' in again.read_text()
    # a second demo empties the file first: the same totals, not twice as many
    code, _, _ = run("demo", "--clients", "60", "--db", f"sqlite:///{db}", "-o", str(report))
    assert code == 0 and sum(1 for _ in crmcore.SqlStore(f"sqlite:///{db}").clients()) == 60


def test_demo_refuses_a_non_positive_size(tmp_path: Path) -> None:
    code, _, err = run("demo", "--clients", "0", "--db", f"sqlite:///{tmp_path / 'x.db'}")
    assert code == 1 and "--clients 0" in err


def test_demo_never_empties_a_database_it_did_not_make(tmp_path: Path) -> None:
    mine = tmp_path / "crm.db"
    code, _, _ = run("run", str(Path(__file__).parents[1] / "examples" / "rules"), "--events",
                     str(Path(__file__).parents[1] / "examples" / "events" / "events.jsonl"), "--db", f"sqlite:///{mine}")
    assert code == 0
    assert not Path(f"{mine}-wal").exists(), "the command left its store open: the file may change after it"
    before = mine.read_bytes()
    code, _, err = run("demo", "--clients", "5", "--db", f"sqlite:///{mine}", "-o", str(tmp_path / "r.html"))
    assert code == 1 and "not a database the demo made" in err and "--force" in err
    assert mine.read_bytes() == before
    (tmp_path / "notes.txt").write_text("my notes")
    code, _, err = run("demo", "--clients", "5", "--db", f"sqlite:///{tmp_path / 'notes.txt'}", "-o", str(tmp_path / "r.html"))
    assert code == 1 and (tmp_path / "notes.txt").read_text() == "my notes"
    code, _, _ = run("demo", "--clients", "5", "--db", f"sqlite:///{mine}", "-o", str(tmp_path / "r.html"), "--force")
    assert code == 0 and sum(1 for _ in crmcore.SqlStore(f"sqlite:///{mine}").clients()) == 5


def test_demo_with_a_prefix_names_its_tables_so_and_replaces_its_own_file(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'demo.db'}"
    for _ in range(2):  # the second run knows the file as the demo's by its d_meta table
        code, _, err = run("demo", "--clients", "5", "--db", db, "--prefix", "d_", "-o", str(tmp_path / "r.html"))
        assert code == 0, err
    assert sum(1 for _ in crmcore.SqlStore(db, prefix="d_").clients()) == 5


def test_demo_checks_the_report_folder_before_it_runs(tmp_path: Path) -> None:
    code, _, err = run("demo", "--clients", "5", "--db", f"sqlite:///{tmp_path / 'd.db'}", "-o", str(tmp_path / "no" / "r.html"))
    assert code == 1 and "does not exist" in err and not (tmp_path / "d.db").exists()


def test_view_commands_do_not_create_a_database_for_a_mistyped_path(tmp_path: Path) -> None:
    typo = tmp_path / "typo.db"
    for argv in (["kpi", "--from", "2026-02-01", "--to", "2026-03-01"], ["report", "-o", str(tmp_path / "r.html")],
                 ["capacity"], ["queue", "dormant"]):
        code, _, err = run(*argv, "--db", f"sqlite:///{typo}")
        assert code == 1 and "no such database file" in err, argv
    assert not typo.exists()


def test_the_demo_sets_ftd_targets_for_sales_agents_only() -> None:
    from crmcore.kpi.leaderboard import leaderboard

    engine = crmcore.Engine(demo_rules())
    rows = leaderboard(engine.store, *MONTH, "ftd_count", as_of=END)
    targets = {row["agent"]: row["target"] for row in rows}
    assert {agent for agent, target in targets.items() if target is None} == {"r01", "r02", "r03", "r04", "r05"}
    assert {target for target in targets.values() if target is not None} == {15}


def test_some_demo_agents_work_set_hours_and_every_desk_has_agents_always_on() -> None:
    agents = [agent for agent in demo_rules().agents.values() if agent.role == "agent"]
    assert sum(agent.hours is not None for agent in agents) >= 5
    for desk in {agent.desk for agent in agents}:
        assert any(agent.hours is None for agent in agents if agent.desk == desk), desk


@pytest.mark.parametrize("client", [
    {"country": "DE"}, {"country": "AT"}, {"country": "CH"},  # sales-dach
    {"country": "GB", "vip": True}, {"country": "SE", "vip": True},  # sales-senior
    {"country": "FR"}, {"country": "AE", "language": "ar"}, {"country": "RU", "language": "ru"},  # sales-general
])
def test_a_lead_at_the_weekend_reaches_the_desk_it_reaches_on_a_weekday(client: dict[str, object]) -> None:
    def desks(at: str) -> list[str]:
        """The desk the registration and then the first deposit, an hour later, assign to."""
        engine = crmcore.Engine(demo_rules())
        deposit_at = at.replace("T02:", "T03:").replace("T10:", "T11:")
        found = []
        for event in ({"id": "r", "type": "client_registered", "client_id": "c", "at": at, **client},
                      {"id": "d", "type": "deposit", "client_id": "c", "at": deposit_at, "amount": "500"}):
            decision = engine.handle(event).decision
            assert decision is not None and decision.assignment is not None, decision
            found.append(decision.assignment.desk)
        return found

    assert desks("2026-02-15T02:00:00Z") == desks("2026-02-17T10:00:00Z")  # Sunday night, Tuesday morning


def test_the_progress_bar_follows_the_simulated_clock() -> None:
    from crmcore.demo import _progress_line

    assert _progress_line("2025-12-01T00:00:00Z", 90, 0, 0.0).startswith("  [" + "." * 30 + "]   0%  day 1/90")
    half = _progress_line("2026-01-15T00:00:00Z", 90, 1000, 2.0)
    assert half == "  [" + "#" * 15 + "." * 15 + "]  50%  day 46/90  1,000 events (500/s)"
    assert "[" + "#" * 30 + "] 100%  day 90/90" in _progress_line("2026-03-01T00:00:00Z", 90, 5, 1.0)


def test_demo_without_a_size_generates_the_default_number_of_clients(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(crmcore.demo, "DEFAULT_CLIENTS", 4)  # the library's default, not one of the command line's own
    code, out, err = run("demo", "--db", f"sqlite:///{tmp_path / 'demo.db'}", "-o", str(tmp_path / "r.html"))
    assert code == 0, err
    assert "crmcore demo: 4 clients" in out


def test_a_prefix_or_schema_the_store_refuses_leaves_an_earlier_demo_in_place(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    assert run("demo", "--clients", "3", "--db", f"sqlite:///{db}", "-o", str(tmp_path / "r.html"))[0] == 0
    size = db.stat().st_size
    for option in (["--prefix", "bad-"], ["--schema", "x"]):
        code, _, err = run("demo", "--clients", "3", "--db", f"sqlite:///{db}", "-o", str(tmp_path / "r.html"), *option)
        assert code == 1 and err.startswith("crmcore demo: error: "), err
        assert db.stat().st_size == size  # not removed first
