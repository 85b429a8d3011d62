"""``crmcore backtest``: a hand-checked rule change, through the API and the CLI."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

import crmcore
from crmcore.backtest import backtest
from crmcore.cli import main

OLD = """
version: 1
desks:
  - {id: sales, sla: {first_contact: 1h}}
  - {id: senior}
agents:
  - {id: a1, desk: sales}
  - {id: a2, desk: sales}
  - {id: s1, desk: senior}
scores:
  lead:
    rules:
      - {name: german, when: 'client.country == "DE"', points: 50}
      - {name: phone, when: 'client.phone_verified', points: 30}
    bands: {hot: 70, cold: 0}
routing:
  registration:
    - {name: hot, when: 'band.lead == "hot"', assign: {desk: senior}}
    - {name: rest, when: 'true', assign: {desk: sales, strategy: round_robin}}
triggers:
  - {name: big_deposit, on: deposit, when: 'event.amount >= 1000', queue: vip}
"""
# The change: hot from 50 points (German leads are hot without a verified phone), and
# big deposits from 500.
NEW = OLD.replace("bands: {hot: 70, cold: 0}", "bands: {hot: 50, cold: 0}").replace(
    "event.amount >= 1000", "event.amount >= 500")


def events() -> list[dict[str, Any]]:
    def reg(cid: str, country: str, phone: bool, minute: int) -> dict[str, Any]:
        return {"id": f"reg-{cid}", "type": "client_registered", "client_id": cid, "country": country,
                "phone_verified": phone, "at": f"2026-03-02T09:{minute:02d}:00Z"}
    return [
        reg("c1", "DE", True, 0),   # 80: hot in both -> senior
        reg("c2", "DE", False, 1),  # 50: cold -> sales/a1 before; hot -> senior after
        reg("c3", "FR", True, 2),   # 30: cold -> sales (a2 before, a1 after: the pointer moved less)
        reg("c4", "FR", False, 3),  # 0: cold -> sales (a1 before, a2 after)
        {"id": "d1", "type": "deposit", "client_id": "c3", "amount": 700, "at": "2026-03-02T10:00:00Z"},
        {"id": "d2", "type": "deposit", "client_id": "c4", "amount": 1500, "at": "2026-03-02T10:02:00Z"},
        {"id": "d2", "type": "deposit", "client_id": "c4", "amount": 1500, "at": "2026-03-02T10:02:00Z"},
    ]


def test_a_rule_change_is_reported_as_hand_worked() -> None:
    report = backtest(crmcore.loads(OLD), crmcore.loads(NEW), events())
    data = report.as_dict()
    assert report.events == 7 and data["old"]["duplicates"] == data["new"]["duplicates"] == 1
    assert data["assignments"]["by_desk"] == {
        "sales": {"old": 3, "new": 2, "change": -1},
        "senior": {"old": 1, "new": 2, "change": 1},
    }
    by_agent = {(row["desk"], row["agent"]): (row["old"], row["new"]) for row in data["assignments"]["by_agent"]}
    assert by_agent == {("sales", "a1"): (2, 1), ("sales", "a2"): (1, 1), ("senior", "s1"): (1, 2)}
    assert data["bands"]["lead"] == {"cold": {"old": 3, "new": 2, "change": -1}, "hot": {"old": 1, "new": 2, "change": 1}}
    assert data["triggers_fired"] == {"big_deposit": {"old": 1, "new": 2, "change": 1}}
    # the scan at the last event (10:02) finds c2 (sales/a1 since 09:01) past sales' 1h SLA
    # under OLD (c3's falls due at 10:02 itself: still in time); under NEW c2 is at senior,
    # which has no SLA
    assert data["scans"] == {"every": "1d", "count": 1}
    assert data["sla_breaches"] == {"alert": {"old": 1, "new": 0, "change": -1}}
    changes = {c["client_id"]: c for c in data["route_changes"]}
    assert sorted(changes) == ["c2", "c3", "c4"]
    old, new = changes["c2"]["old"][0], changes["c2"]["new"][0]
    assert (old["rule"], old["desk"], old["agent"]) == ("rest", "sales", "a1")
    assert (new["rule"], new["desk"], new["agent"]) == ("hot", "senior", "s1")
    assert old["trace"] and new["trace"]  # both traces, to see why
    assert (changes["c3"]["old"][0]["agent"], changes["c3"]["new"][0]["agent"]) == ("a2", "a1")


def test_the_same_rules_change_nothing() -> None:
    report = backtest(crmcore.loads(OLD), crmcore.loads(OLD), events())
    data = report.as_dict()
    assert data["route_changes"] == []
    assert all(row["change"] == 0 for row in data["assignments"]["by_desk"].values())
    assert "clients whose route differs: 0" in report.render()


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "old.yaml").write_text(OLD)
    (tmp_path / "new.yaml").write_text(NEW)
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events()) + "not json\n")
    return {name: str(tmp_path / name) for name in ("old.yaml", "new.yaml", "events.jsonl")}


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


def test_the_cli_prints_the_changes_with_both_traces(files: dict[str, str]) -> None:
    code, out, _ = run("backtest", files["old.yaml"], files["new.yaml"], "--events", files["events.jsonl"])
    assert code == 0
    assert "backtest over 8 events" in out and "dead-lettered 1" in out
    assert "    s1                                1 ->        2        +1 *" in out
    assert "  big_deposit                         1 ->        2        +1 *" in out
    assert "clients whose route differs: 3" in out
    assert "    old: registration: assigned by rest to sales/a1" in out
    assert "    new: registration: assigned by hot to senior/s1" in out
    assert "      old registration trace: hot no_match, rest assigned a1\n      new registration trace: hot assigned s1\n" in out


def test_the_cli_json_is_the_report(files: dict[str, str]) -> None:
    code, out, _ = run("backtest", files["old.yaml"], files["new.yaml"], "--events", files["events.jsonl"], "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert data["triggers_fired"]["big_deposit"] == {"old": 1, "new": 2, "change": 1}
    assert [c["client_id"] for c in data["route_changes"]] == ["c2", "c3", "c4"]


def test_bad_rules_or_a_missing_file_fail_clearly(files: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("version: 1\nscores:\n  lead:\n    rules:\n      - {name: x, when: 'client.nope', points: 1}\n")
    code, _, err = run("backtest", files["old.yaml"], str(tmp_path / "broken.yaml"), "--events", files["events.jsonl"])
    assert code == 1 and "broken.yaml:5" in err and "nope" in err
    code, _, err = run("backtest", files["old.yaml"], files["new.yaml"], "--events", str(tmp_path / "missing.jsonl"))
    assert code == 1 and "missing.jsonl: no such events file" in err


def test_a_file_of_no_valid_events_is_an_error_not_an_empty_report(files: dict[str, str], tmp_path: Path) -> None:
    wrong = tmp_path / "case.yaml"
    wrong.write_text("client: {country: DE}\nnow: 2026-03-01T12:00:00Z\n")
    code, _, err = run("backtest", files["old.yaml"], files["new.yaml"], "--events", str(wrong))
    assert code == 1 and "no event could be handled" in err and "JSON Lines" in err
    code, _, err = run("backtest", files["old.yaml"], files["new.yaml"], "--events", files["events.jsonl"], "--limit", "-1")
    assert code == 1 and "--limit -1" in err


# Dormancy: the change brokers make most, seen only by scans.
DORMANT_OLD = """
version: 1
desks:
  - {id: sales, sla: {first_contact: 24h}, on_sla_breach: reassign}
agents:
  - {id: a1, desk: sales}
  - {id: a2, desk: sales}
routing:
  registration:
    - {name: all, when: 'true', assign: {desk: sales, strategy: round_robin}}
triggers:
  - {name: dormant, when: 'client.stage == "funded" and days_since(client.last_trade_at) >= 30', queue: dormant, cooldown: 30d}
"""
DORMANT_NEW = DORMANT_OLD.replace(">= 30'", ">= 10'")


def dormancy_events() -> list[dict[str, Any]]:
    """c1 trades on 1 March and is silent after; c2 (registered, never funded) logs in on 20 March."""
    return [
        {"id": "r1", "type": "client_registered", "client_id": "c1", "country": "DE", "at": "2026-03-01T09:00:00Z"},
        {"id": "k1", "type": "contact", "client_id": "c1", "agent_id": "a1", "channel": "call", "outcome": "reached", "at": "2026-03-01T09:30:00Z"},
        {"id": "d1", "type": "deposit", "client_id": "c1", "amount": 500, "at": "2026-03-01T10:00:00Z"},
        {"id": "t1", "type": "trade", "client_id": "c1", "volume": 1, "pnl": 10, "at": "2026-03-01T11:00:00Z"},
        {"id": "r2", "type": "client_registered", "client_id": "c2", "country": "FR", "at": "2026-03-01T12:00:00Z"},
        {"id": "k2", "type": "contact", "client_id": "c2", "agent_id": "a2", "channel": "call", "outcome": "reached", "at": "2026-03-01T12:30:00Z"},
        {"id": "l2", "type": "login", "client_id": "c2", "at": "2026-03-20T12:00:00Z"},
    ]


def test_a_scan_finds_the_dormant_client_the_lower_threshold_catches() -> None:
    # c1's last trade is 1 March 11:00: 10 days at the midnight scan of 12 March (NEW fires
    # there, once: 30d cooldown); at the end (20 March 12:00) 19 days, never 30 (OLD)
    report = backtest(crmcore.loads(DORMANT_OLD), crmcore.loads(DORMANT_NEW), dormancy_events())
    data = report.as_dict()
    assert data["triggers_fired"] == {"dormant": {"old": 0, "new": 1, "change": 1}}
    assert data["sla_breaches"] == {}  # both clients contacted in time


def test_scans_run_at_each_midnight_the_events_cross_and_at_the_last_event() -> None:
    # without a cooldown the trigger fires at every scan where it holds: midnights 2 to 20
    # March (19) and 20 March 12:00; it holds from 11 March 11:00: 12 to 20 March and the last
    no_cooldown = crmcore.loads(DORMANT_NEW.replace(", cooldown: 30d", ""))
    report = backtest(crmcore.loads(DORMANT_OLD), no_cooldown, dormancy_events())
    assert report.scans == 20
    assert report.as_dict()["triggers_fired"]["dormant"] == {"old": 0, "new": 10, "change": 10}


def test_no_scan_ran_at_a_time_twice() -> None:
    # every 6h: 1 March 12:00 (before c2 registers) to 20 March 12:00 is 77 boundaries; the
    # last is the last event's time, scanned before it, so no scan follows it
    no_cooldown = crmcore.loads(DORMANT_NEW.replace(", cooldown: 30d", ""))
    report = backtest(crmcore.loads(DORMANT_OLD), no_cooldown, dormancy_events(), scan_every="6h")
    assert report.scans == 77
    # holds from 11 March 11:00: the boundaries 11 March 12:00 to 20 March 12:00
    assert report.new.fired["dormant"] == 37


def test_an_sla_reassignment_by_a_scan_counts_as_an_assignment() -> None:
    # NEW's 1h SLA: c1, assigned to a1 at 09:00 and not contacted, is found at the midnight
    # scan of 2 March and goes to a2, who calls at 00:30; OLD's 24h ends after the last event
    late = [e for e in dormancy_events()[:6] if e["id"] != "k1"] + [
        {"id": "k3", "type": "contact", "client_id": "c1", "agent_id": "a2", "channel": "call", "outcome": "reached",
         "at": "2026-03-02T00:30:00Z"}]
    report = backtest(crmcore.loads(DORMANT_OLD), crmcore.loads(DORMANT_OLD.replace("24h", "1h")), late)
    data = report.as_dict()
    assert data["sla_breaches"] == {"reassign": {"old": 0, "new": 1, "change": 1}}
    by_agent = {row["agent"]: (row["old"], row["new"]) for row in data["assignments"]["by_agent"]}
    assert by_agent == {"a1": (1, 1), "a2": (1, 2)}
    [change] = report.route_changes()
    assert change.client_id == "c1"
    assert change.summary(change.new) == "registration: assigned by all to sales/a1; registration: assigned by all to sales/a2"


def test_no_scans_replay_events_only() -> None:
    report = backtest(crmcore.loads(DORMANT_OLD), crmcore.loads(DORMANT_NEW), dormancy_events(), scan_every="0")
    assert report.scans == 0
    assert report.as_dict()["triggers_fired"] == {}


@pytest.fixture()
def dormancy_files(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "old.yaml").write_text(DORMANT_OLD)
    (tmp_path / "new.yaml").write_text(DORMANT_NEW)
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in dormancy_events()))
    return {name: str(tmp_path / name) for name in ("old.yaml", "new.yaml", "events.jsonl")}


def test_the_cli_json_counts_scan_firings(dormancy_files: dict[str, str]) -> None:
    f = dormancy_files
    code, out, _ = run("backtest", f["old.yaml"], f["new.yaml"], "--events", f["events.jsonl"], "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert data["scans"] == {"every": "1d", "count": 20}
    assert data["triggers_fired"] == {"dormant": {"old": 0, "new": 1, "change": 1}}


@pytest.mark.parametrize("off", ["0", "none"])
def test_the_cli_scan_every_0_runs_no_scan(dormancy_files: dict[str, str], off: str) -> None:
    f = dormancy_files
    code, out, _ = run("backtest", f["old.yaml"], f["new.yaml"], "--events", f["events.jsonl"], "--scan-every", off)
    assert code == 0
    assert "  scans: 0 (--scan-every 0)\n" in out
    assert "triggers fired:\n  (none)\n" in out


def test_the_cli_scan_every_takes_a_duration(dormancy_files: dict[str, str]) -> None:
    f = dormancy_files
    code, out, _ = run("backtest", f["old.yaml"], f["new.yaml"], "--events", f["events.jsonl"], "--scan-every", "6h")
    assert code == 0 and "  scans: 77 (every 6h and at the last event)\n" in out
    code, _, err = run("backtest", f["old.yaml"], f["new.yaml"], "--events", f["events.jsonl"], "--scan-every", "1x")
    assert code == 1 and "--scan-every 1x: '1x' is not a duration" in err
