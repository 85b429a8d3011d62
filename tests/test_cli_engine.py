"""`crmcore run` and `crmcore explain`: end to end through the command line."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from crmcore import SqlStore, load_rules
from crmcore.case import CaseError, explain_case, load_case
from crmcore.cli import main

ROOT = Path(__file__).parents[1]
RULES = ROOT / "examples" / "rules"
EVENTS = ROOT / "examples" / "events" / "events.jsonl"
CLIENT = ROOT / "examples" / "events" / "client.yaml"
SPEC_RULES = Path(__file__).parent / "data" / "spec_rules.yaml"



@pytest.fixture(autouse=True)
def _in_a_fresh_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`crmcore run` writes crmcore.db in the current folder by default: one per test."""
    monkeypatch.chdir(tmp_path)


SPEC_CASE = """\
client: {country: DE, language: de, registered_at: 2026-03-01T10:00:00Z,
         kyc_submitted_at: 2026-03-01T11:00:00Z, email_clicks: 2}
ib: {id: IB1, quality: 90}
events: []
now: 2026-03-01T12:00:00Z
"""


def run(*argv: str | Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main([str(a) for a in argv], out, err)
    return code, out.getvalue(), err.getvalue()


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(path: Path, *events: dict[str, Any]) -> Path:
    return write(path, "".join(json.dumps(e) + "\n" for e in events))


def registration(n: int) -> dict[str, Any]:
    return {"id": f"r{n}", "type": "client_registered", "at": "2026-03-01T10:00:00Z",
            "client_id": f"c{n}", "country": "GB", "language": "en"}


# --- run --------------------------------------------------------------------------------------


def test_run_prints_the_summary_and_each_dead_letter() -> None:
    code, out, err = run("run", RULES, "--events", EVENTS)
    assert code == 0
    assert out.splitlines() == [
        "handled 41, duplicates 1, dead-lettered 1",
        "  line 33, event ev-0032: deposit.amount: Input should be a valid decimal",
    ]
    assert err == ""  # no progress line when stderr is not a terminal


def test_run_writes_one_decision_line_per_event(tmp_path: Path) -> None:
    out_file = tmp_path / "decisions.jsonl"
    code, _, _ = run("run", RULES, "--events", EVENTS, "--decisions", out_file)
    assert code == 0
    lines = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert len(lines) == 43 == len(EVENTS.read_text().splitlines())
    assert Counter(r["status"] for r in lines) == {"handled": 41, "duplicate": 1, "dead_lettered": 1}
    by_id = {(r["event_id"], r["status"]): r for r in lines}
    assert by_id[("ev-0025", "duplicate")]["decisions"] == []
    dead = by_id[("ev-0032", "dead_lettered")]
    assert dead["error"] == "line 33: deposit.amount: Input should be a valid decimal"

    def routed(event_id: str) -> list[tuple[Any, ...]]:
        return [
            (d["client_id"], d["cause"], d["routing"]["stage"], d["routing"]["rule"], d["routing"]["agent"])
            for d in by_id[(event_id, "handled")]["decisions"]
        ]

    assert routed("ev-0003") == [("c-1001", "event", "registration", "dach", "a04")]
    assert routed("ev-0004") == [("c-1002", "event", "registration", "premium_ib", "a01")]
    assert routed("ev-0008") == [("c-1006", "event", "registration", "vip", "a02")]
    assert routed("ev-0010") == [("c-1008", "event", "registration", "designated_manager", "a08")]
    assert routed("ev-0023") == [("c-1001", "event", "ftd", "dach_to_retention", "r02")]
    assert routed("ev-0024") == [("c-1002", "event", "ftd", "big_ftd_language_match", "r01")]
    # a07 made inactive: their client is routed again (nobody else speaks Portuguese)
    assert routed("ev-0033") == [("c-1004", "agent_inactive", "registration", "everyone_else", "a10")]
    pooled = by_id[("ev-0005", "handled")]["decisions"][0]["routing"]
    assert (pooled["outcome"], pooled["desk"]) == ("pooled", "sales-general")
    assert by_id[("ev-0001", "handled")]["decisions"] == []  # ib_updated decides nothing
    first = by_id[("ev-0003", "handled")]["decisions"][0]
    assert first["scores"] == {"lead": 45, "churn_risk": 0}
    assert first["bands"] == {"lead": "warm", "churn_risk": "low"}


def test_strict_fails_on_dead_letters_only(tmp_path: Path) -> None:
    assert run("run", RULES, "--events", EVENTS, "--strict")[0] == 1
    clean = jsonl(tmp_path / "clean.jsonl", registration(1), registration(1))
    code, out, _ = run("run", RULES, "--events", clean, "--strict")
    assert (code, out) == (0, "handled 1, duplicates 1, dead-lettered 0\n")


def test_at_most_20_dead_letters_are_listed(tmp_path: Path) -> None:
    lines = [json.dumps({"id": f"x{n}", "type": "login", "at": "2026-03-01T10:00:00Z", "client_id": "nobody"})
             for n in range(23)]
    events = write(tmp_path / "e.jsonl", "\n".join(["not json", *lines]) + "\n")
    code, out, _ = run("run", RULES, "--events", events)
    assert code == 0
    output = out.splitlines()
    assert output[0] == "handled 0, duplicates 0, dead-lettered 24"
    assert output[1].startswith("  line 1: invalid JSON: ")
    assert output[2] == "  event x0: unknown client 'nobody' (no client_registered before this event)"
    assert len(output) == 22 and output[-1] == "  ... and 4 more"


def test_a_missing_events_file_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    code, out, err = run("run", RULES, "--events", missing)
    assert (code, out) == (1, "")
    assert err == f"crmcore run: error: {missing}: no such events file\n"


def test_rules_that_do_not_load_print_their_diagnostics(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.yaml", "scores:\n  lead:\n    rules:\n      - {name: a, when: 'client.contry == \"DE\"', points: 1}\n")
    code, out, err = run("run", bad, "--events", EVENTS)
    assert (code, out) == (1, "")
    assert err.splitlines()[0] == f"{bad}:4:26: error: unknown field 'client.contry'; did you mean 'country'? [E200]"
    assert err.splitlines()[-1] == "1 error, 0 warnings"


def test_progress_is_shown_on_a_terminal(tmp_path: Path) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    err = Terminal()
    code = main(["run", str(RULES), "--events", str(EVENTS)], io.StringIO(), err)
    assert code == 0
    assert err.getvalue().startswith("\r") and err.getvalue().endswith("\n")
    assert "43 events" in err.getvalue()


def test_the_installed_command_runs_the_examples(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "crmcore", "run", str(RULES), "--events", str(EVENTS), "--strict",
         "--decisions", str(tmp_path / "d.jsonl")],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert result.returncode == 1  # --strict, one dead letter
    assert result.stdout.splitlines()[0] == "handled 41, duplicates 1, dead-lettered 1"
    assert result.stderr == ""
    assert len((tmp_path / "d.jsonl").read_text().splitlines()) == 43


def test_run_persists_and_a_second_run_changes_nothing(tmp_path: Path) -> None:
    import sqlalchemy as sa

    db = f"sqlite:///{tmp_path / 'broker.db'}"
    code, out, _ = run("run", RULES, "--events", EVENTS, "--db", db)
    assert code == 0 and out.splitlines()[0] == "handled 41, duplicates 1, dead-lettered 1"

    def totals() -> dict[str, int]:
        engine = sa.create_engine(db)
        with engine.connect() as conn:
            counts = {
                name: conn.execute(sa.text(f"SELECT count(*) FROM crm_{name}")).scalar_one()
                for name in ("events", "clients", "assignments", "decisions", "outbox", "dead_letters")
            }
        engine.dispose()
        return counts

    first = totals()
    assert first["events"] == 41 and first["clients"] == 8 and first["dead_letters"] == 1
    code, out, _ = run("run", RULES, "--events", EVENTS, "--db", db)
    assert code == 0 and out.splitlines()[0] == "handled 0, duplicates 42, dead-lettered 1"
    assert totals() == first
    assert (tmp_path / "crmcore.db").exists() is False  # --db was used, not the default


def test_run_defaults_to_crmcore_db_in_the_current_folder(tmp_path: Path) -> None:
    assert run("run", RULES, "--events", EVENTS)[0] == 0
    assert (tmp_path / "crmcore.db").is_file()


def test_run_refuses_a_bad_database_url() -> None:
    code, out, err = run("run", RULES, "--events", EVENTS, "--db", "nonsense")
    assert (code, out) == (1, "") and "is not a database URL" in err


# --- explain --client -------------------------------------------------------------------------


def test_explain_the_spec_case(tmp_path: Path) -> None:
    # SPEC §9: 20 (tier1) + 15 (fast KYC) + 90 * 0.2 (IB) + 7 (engaged) = 60, warm; not hot,
    # so DACH -> sales-general round robin with a German speaker: a2 (a3 speaks en, es).
    case = write(tmp_path / "case.yaml", SPEC_CASE)
    code, out, err = run("explain", SPEC_RULES, "--client", case)
    assert (code, err) == (0, "")
    data = json.loads(out)
    routing = {k: v for k, v in data.pop("routing").items() if k not in ("at", "cause", "event_id", "rule_version")}
    assert data["assignment"]["agent_id"] == "a2" and data["route"] == {"rule": "dach", "desk": "sales-general", "agent": "a2"}
    assert {k: data[k] for k in ("client_id", "now", "rule_version", "scores", "bands", "breakdown", "triggers")} | {
        "routing": routing} == {
        "client_id": "client",
        "now": "2026-03-01T12:00:00Z",
        "rule_version": load_rules(SPEC_RULES).version,
        "scores": {"lead": 60},
        "bands": {"lead": "warm"},
        "breakdown": {"lead": {"tier1_country": 20, "fast_kyc": 15, "ib_quality": 18, "engaged": 7}},
        "triggers": [],
        "routing": {
            "stage": "registration", "outcome": "assigned", "rule": "dach", "desk": "sales-general",
            "agent": "a2", "strategy": "round_robin",
            "trace": [
                {"rule": "designated_manager", "outcome": "no_match"},
                {"rule": "ib_designated", "outcome": "no_match"},
                {"rule": "hot", "outcome": "no_match"},
                {"rule": "dach", "outcome": "assigned", "agent": "a2"},
            ],
        },
    }


def test_explain_infers_the_stage_and_now_overrides_the_case(tmp_path: Path) -> None:
    # No KYC: stage registered; kyc_nudge holds from 24 hours after registration.
    case = write(tmp_path / "case.json", json.dumps({
        "client": {"id": "c9", "country": "FR", "language": "fr", "registered_at": "2026-03-01T10:00:00Z",
                   "manager_id": "a3"},
        "now": "2026-03-01T12:00:00Z",
    }))
    data = json.loads(run("explain", SPEC_RULES, "--client", case)[1])
    assert (data["client_id"], data["scores"], data["bands"], data["triggers"]) == ("c9", {"lead": 0}, {"lead": "cold"}, [])
    assert data["breakdown"] == {"lead": {}}
    assert (data["routing"]["rule"], data["routing"]["agent"], data["routing"]["desk"]) == ("designated_manager", "a3", None)
    code, out, _ = run("explain", SPEC_RULES, "--client", case, "--now", "2026-03-02T10:00:00Z")
    assert code == 0
    assert (json.loads(out)["now"], json.loads(out)["triggers"]) == ("2026-03-02T10:00:00Z", ["kyc_nudge"])


def test_explain_counts_the_case_history_in_windows() -> None:
    code, out, _ = run("explain", RULES, "--client", CLIENT)
    assert code == 0
    data = json.loads(out)
    assert data["scores"] == {"lead": 75, "churn_risk": 0}
    assert data["bands"] == {"lead": "hot", "churn_risk": "low"}
    assert data["breakdown"]["lead"] == {
        "tier1_country": 20, "fast_kyc": 15, "phone_verified": 10, "engaged_by_email": 7,
        "came_back": 8, "high_intent_source": 10, "business_email": 5,
    }
    assert (data["routing"]["rule"], data["routing"]["agent"]) == ("hot", "a01")
    # `ago` is relative to now: with a later --now the history moves along, the client's
    # own timestamps do not.
    later = json.loads(run("explain", RULES, "--client", CLIENT, "--now", "2026-03-08T08:15:00Z")[1])
    assert later["now"] == "2026-03-08T08:15:00Z"
    assert later["scores"] == data["scores"] and later["breakdown"] == data["breakdown"]


def test_load_case_takes_a_mapping_and_resolves_ago() -> None:
    rules = load_rules(SPEC_RULES)
    case = load_case({
        "client": {"id": "c1", "country": "GB", "registered_at": "2026-03-01T00:00:00Z",
                   "ftd_at": "2026-03-02T00:00:00Z", "balance": 500, "last_trade_at": "2026-03-01T00:00:00Z"},
        "events": [{"type": "deposit", "amount": 500, "ago": "40d"}, {"type": "trade", "volume": 1, "pnl": 2.5, "at": "2026-03-10T00:00:00Z"}],
        "now": "2026-04-15T00:00:00Z",
    })
    result = explain_case(rules, case)
    assert result["triggers"] == ["dormant_30d"]  # stage funded from ftd_at, 36 days since the last trade
    # the case is played as a rule test plays it: registered (everyone_else -> a2), then the
    # first deposit of ftd_at hands the client over to retention
    assert (result["routing"]["stage"], result["routing"]["rule"], result["routing"]["agent"]) == ("ftd", "to_retention", "r1")
    assert result["routing"]["trace"] == [{"rule": "to_retention", "outcome": "assigned", "agent": "r1"}]


DORMANT_CASE = """\
name: dormant funded client
client: {id: c7, country: FR, registered_at: 2025-12-01T10:00:00Z}
trading: {balance: 500, equity: 480}
events:
  - {type: deposit, amount: 500, ago: 80d}
  - {type: trade, volume: 1, pnl: 0, ago: 40d}
now: 2026-03-01T12:00:00Z
"""


def test_explain_plays_the_case_as_a_rule_test_does(tmp_path: Path) -> None:
    # SPEC 11: explain --client takes a rule-test case. Its events are applied (the deposit is
    # the FTD: funded, handed over to retention; the trade sets last_trade_at), and the
    # balance of the trading snapshot is the client's balance (SPEC 11): dormant_30d holds.
    case = write(tmp_path / "case.yaml", DORMANT_CASE)
    code, out, err = run("explain", SPEC_RULES, "--client", case)
    assert (code, err) == (0, "")
    data = json.loads(out)
    assert data["triggers"] == ["dormant_30d"] and data["fired"] == ["dormant_30d"]  # holds at now; fired at the scan
    assert data["route"] == {"rule": "to_retention", "desk": "retention", "agent": "r1"}
    test_file = write(tmp_path / "dormant_test.yaml", f"rules: {SPEC_RULES}\ncases:\n" + "".join(
        f"  {'- ' if i == 0 else '  '}{line}\n" for i, line in enumerate(DORMANT_CASE.splitlines()))
        + "    expect: {triggers: [dormant_30d], route: {rule: to_retention, desk: retention, agent: r1}}\n")
    code, out, _ = run("test", test_file)
    assert code == 0 and out.splitlines()[-1] == "1 passed, 0 failed"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("client: [1, 2]\nnow: 2026-03-01T12:00:00Z\n", "'client' is required and must be a mapping of client fields"),
        ("client: {contry: DE}\nnow: 2026-03-01T12:00:00Z\n", "client.contry: unknown field (known: "),
        ("client: {country: DE, registered_at: yesterday}\nnow: 2026-03-01T12:00:00Z\n",
         "client.registered_at is not an ISO 8601 timestamp: 'yesterday'"),
        ("client: {country: DE, email_clicks: two}\nnow: 2026-03-01T12:00:00Z\n",
         "client.email_clicks should be int, got str 'two'"),
        ("client: {country: DE}\nnow: 2026-03-01T12:00:00Z\nevents: [{type: deposit, amount: 5, ago: 3x}]\n",
         "events[0].ago: '3x' is not a duration"),
        ("client: {country: DE}\nnow: 2026-03-01T12:00:00Z\nevents: [{type: deposit, amount: abc, ago: 3d}]\n",
         "events[0]: deposit.amount: Input should be a valid decimal"),
        ("client: {country: DE}\nnow: 2026-03-01T12:00:00Z\nevents: [{type: login, at: 2026-03-02T00:00:00Z}]\n",
         "events[0]: at 2026-03-02T00:00:00Z is after now (2026-03-01T12:00:00Z)"),
        ("client: {country: DE}\nnow: 2026-03-01T12:00:00Z\nib: {quality: 3}\n", "ib.id is required"),
        ("client: {country: DE}\nnow: 2026-03-01T12:00:00Z\nextra: 1\n", "unknown key(s) 'extra'"),
        ("client: {country: DE\n", "not valid YAML or JSON (line 2, column 1)"),
        ("client: {language: de, registered_at: 2026-03-01T10:00:00Z}\nnow: 2026-03-01T12:00:00Z\n",
         "client.country is required (string) but missing"),
    ],
)
def test_explain_errors_name_the_file_and_the_problem(tmp_path: Path, text: str, message: str) -> None:
    case = write(tmp_path / "case.yaml", text)
    code, out, err = run("explain", SPEC_RULES, "--client", case)
    assert (code, out) == (1, "")
    assert err.startswith(f"crmcore explain: error: {case}: ") and message in err, err
    assert len(err.splitlines()) == 1


def test_explain_a_missing_case_file(tmp_path: Path) -> None:
    code, _, err = run("explain", SPEC_RULES, "--client", tmp_path / "none.yaml")
    assert (code, err) == (1, f"crmcore explain: error: {tmp_path / 'none.yaml'}: no such file\n")
    with pytest.raises(CaseError, match="no such file"):
        load_case(tmp_path / "none.yaml")


def test_explain_a_bad_now(tmp_path: Path) -> None:
    case = write(tmp_path / "case.yaml", SPEC_CASE)
    code, _, err = run("explain", SPEC_RULES, "--client", case, "--now", "noon")
    assert (code, err) == (1, "crmcore explain: error: --now 'noon' is not an ISO 8601 time (such as 2026-03-01T12:00:00Z)\n")


# --- explain --events -------------------------------------------------------------------------


def test_explain_a_client_after_the_events() -> None:
    code, out, err = run("explain", RULES, "--client", CLIENT, "--events", EVENTS)
    assert code == 0
    assert err == f"note: {EVENTS}: 1 event(s) dead-lettered ('crmcore run' lists them)\n"
    data = json.loads(out)
    assert data["client_id"] == "c-1001"
    assert data["now"] == "2026-03-05T22:00:00Z"  # the client's latest decision
    assert data["scores"] == {"lead": 85, "churn_risk": 0}
    assert data["breakdown"]["lead"]["kyc_approved"] == 10
    routing = data["routing"]
    assert (routing["stage"], routing["rule"], routing["agent"], routing["event_id"], routing["at"]) == (
        "ftd", "dach_to_retention", "r02", "ev-0023", "2026-03-03T12:40:00Z"
    )
    assert data["assignment"]["agent_id"] == "r02" and data["pool"] is None
    code, out, _ = run("explain", RULES, "--client", CLIENT, "--events", EVENTS, "--now", "2026-04-30T00:00:00Z")
    later = json.loads(out)
    assert code == 0 and later["now"] == "2026-04-30T00:00:00Z" and later["routing"] == routing


def test_explain_events_errors(tmp_path: Path) -> None:
    stranger = write(tmp_path / "stranger.yaml", "client: {id: c-9999, country: DE}\n")
    code, out, err = run("explain", RULES, "--client", stranger, "--events", EVENTS)
    assert (code, out) == (1, "")
    assert err.endswith(f"crmcore explain: error: {EVENTS}: client 'c-9999' (client.id in {stranger}) is not among the events\n")
    anonymous = write(tmp_path / "anonymous.yaml", "client: {country: DE}\n")
    code, _, err = run("explain", RULES, "--client", anonymous, "--events", EVENTS)
    assert (code, err) == (1, f"crmcore explain: error: {anonymous}: client.id is required with --events (the client to explain)\n")
    code, _, err = run("explain", RULES, "--client", CLIENT, "--events", tmp_path / "none.jsonl")
    assert (code, err) == (1, f"crmcore explain: error: {tmp_path / 'none.jsonl'}: no such events file\n")



# --- scan and queue ------------------------------------------------------------------------------


def test_scan_then_queue_on_the_example_broker(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'broker.db'}"
    assert run("run", RULES, "--events", EVENTS, "--db", db)[0] == 0
    code, out, _ = run("scan", RULES, "--db", db, "--now", "2026-04-20T00:00:00Z")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "scan at 2026-04-20T00:00:00Z: 5 SLA breach(es) (4 alerted, 1 reassigned), 11 trigger firing(s)"
    assert "  no_trade_30d: 2" in lines and "  kyc_nudge: 4" in lines
    again = run("scan", RULES, "--db", db, "--now", "2026-04-20T00:00:00Z")[1]
    assert again.startswith("scan at 2026-04-20T00:00:00Z: 0 SLA breach(es)") and again.endswith("0 trigger firing(s)\n")
    code, out, _ = run("queue", "dormant", "--db", db, "--now", "2026-04-21T00:00:00Z")
    assert code == 0 and out.splitlines()[0] == "dormant: 2 open item(s)"
    assert [line.split()[1] for line in out.splitlines()[1:]] == ["c-1002", "c-1001"]  # highest priority first
    code, out, _ = run("queue", "dormant", "--db", db, "--format", "json", "--now", "2026-04-21T00:00:00Z")
    items = json.loads(out)
    assert [i["client_id"] for i in items] == ["c-1002", "c-1001"] and items[0]["age_hours"] == 24.0
    assert (items[0]["client"]["id"], items[0]["client"]["stage"]) == ("c-1002", "funded")  # SPEC 7: a client summary


def test_run_and_scan_in_batches_decide_as_one_event_at_a_time(tmp_path: Path) -> None:
    import sqlalchemy as sa

    outputs, made, transactions = [], [], []
    statements: Counter[str] = Counter()

    def count(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        statements[statement.split()[0].upper()] += 1

    for batch in ("1", "7"):
        db = f"sqlite:///{tmp_path / f'batch{batch}.db'}"
        statements.clear()
        sa.event.listen(sa.engine.Engine, "before_cursor_execute", count)
        try:
            outputs.append(run("run", RULES, "--events", EVENTS, "--db", db, "--batch", batch)[1])
        finally:
            sa.event.remove(sa.engine.Engine, "before_cursor_execute", count)
        transactions.append(statements["BEGIN"])
        outputs.append(run("scan", RULES, "--db", db, "--now", "2026-04-20T00:00:00Z", "--batch", batch)[1])
        store = SqlStore(db)
        made.append([(d.event_id, d.cause, d.client_id, d.fired, d.sla_breach) for d in store.decisions()])
        made.append([(a.client_id, a.agent_id, a.desk, a.assigned_at, a.ended_at)
                     for client in sorted(c["id"] for c in store.clients()) for a in store.assignments(client)])
        store.close()
    assert outputs[:2] == outputs[2:] and "11 trigger firing(s)" in outputs[1]
    assert made[:2] == made[2:] and made[0]
    assert transactions[0] > 2 * transactions[1] > 0  # a transaction per event, or per 7 events (49 and 13 BEGINs)


@pytest.mark.parametrize("command", ["run", "scan"])
def test_batch_must_be_a_positive_whole_number(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([command, str(RULES), *(["--events", str(EVENTS)] if command == "run" else []), "--batch", "0"])
    assert exit_.value.code == 2 and "--batch: '0' is not a positive whole number" in capsys.readouterr().err


def test_queue_as_a_viewer_is_permission_checked(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'broker.db'}"
    run("run", RULES, "--events", EVENTS, "--db", db)
    run("scan", RULES, "--db", db, "--now", "2026-04-20T00:00:00Z")
    admin = next(a.id for a in load_rules(RULES).agents.values() if a.role == "admin")
    code, out, _ = run("queue", "dormant", "--db", db, "--as", admin)
    assert code == 0 and out.splitlines()[0] == "dormant: 2 open item(s)"
    code, out, err = run("queue", "dormant", "--db", db, "--as", "nobody")
    assert (code, out) == (1, "") and "unknown viewer 'nobody'" in err
    assert run("scan", RULES, "--db", db, "--now", "yesterday")[2].endswith(
        "'yesterday' is not an ISO 8601 time (such as 2026-03-01T12:00:00Z)\n")


def test_explain_without_now_explains_at_the_machine_clock(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    case = write(tmp_path / "case.yaml", "client: {country: DE, registered_at: 2026-03-01T10:00:00Z}\n")
    before = datetime.now(UTC)
    code, out, err = run("explain", SPEC_RULES, "--client", case)
    assert (code, err) == (0, "")
    now = datetime.fromisoformat(json.loads(out)["now"].replace("Z", "+00:00"))
    assert before.replace(microsecond=0) <= now <= datetime.now(UTC)


# --- a database that fails, and where crmcore's tables are ------------------------------------

def _sqlite(path: Path, *statements: str) -> None:
    import sqlite3

    with sqlite3.connect(path) as connection:
        for statement in statements:
            connection.execute(statement)
    connection.close()


def test_a_database_that_refuses_writes_is_a_one_line_error_of_run(tmp_path: Path) -> None:
    first = write(tmp_path / "first.jsonl", "".join(EVENTS.read_text().splitlines(keepends=True)[:10]))
    assert run("run", RULES, "--events", first, "--db", f"sqlite:///{tmp_path / 'crm.db'}")[0] == 0
    read_only = f"sqlite:///file:{tmp_path / 'crm.db'}?mode=ro&uri=true"
    code, out, err = run("run", RULES, "--events", EVENTS, "--db", read_only)
    assert (code, out) == (1, "")
    assert err.startswith("crmcore run: error: SqlStore(") and err.count("\n") == 1
    assert "attempt to write a readonly database; nothing was half-applied" in err
    assert err.endswith("run the same command again when the database is back: what was done counts as duplicates\n")


def test_a_run_that_failed_midway_kept_nothing_half_applied_and_runs_again(tmp_path: Path) -> None:
    """A statement of the 20th event fails in the database (a trigger on a table that is not
    there): the run stops with a one-line error, its batch is rolled back, and once the
    database is repaired the same command handles the whole file."""
    file = tmp_path / "crm.db"
    db = f"sqlite:///{file}"
    assert run("db", "upgrade", "--db", db)[0] == 0
    _sqlite(file, "CREATE TRIGGER fail AFTER INSERT ON crm_decisions WHEN NEW.event_id = 'ev-0020' "
                  "BEGIN INSERT INTO nowhere VALUES (1); END")
    code, _, err = run("run", RULES, "--events", EVENTS, "--db", db)
    assert code == 1 and err.startswith("crmcore run: error: SqlStore(") and "no such table: main.nowhere" in err
    store = SqlStore(db)
    assert list(store.events()) == [] and store.decisions() == [] and store.dead_letters() == []
    store.close()
    _sqlite(file, "DROP TRIGGER fail")
    code, out, _ = run("run", RULES, "--events", EVENTS, "--db", db)
    assert code == 0 and out.startswith("handled 41, duplicates 1, dead-lettered 1\n")


def test_a_database_that_refuses_writes_is_a_one_line_error_of_scan(tmp_path: Path) -> None:
    assert run("run", RULES, "--events", EVENTS, "--db", f"sqlite:///{tmp_path / 'crm.db'}")[0] == 0
    read_only = f"sqlite:///file:{tmp_path / 'crm.db'}?mode=ro&uri=true"
    code, out, err = run("scan", RULES, "--db", read_only, "--now", "2026-04-20T00:00:00Z")
    assert (code, out) == (1, "") and err.count("\n") == 1
    assert err.startswith("crmcore scan: error: SqlStore(") and "attempt to write a readonly database" in err
    assert err.endswith("nothing was half-applied (each client's checks are atomic; the batches committed before it are kept)\n")


def test_a_failing_query_of_a_view_is_a_one_line_error(tmp_path: Path) -> None:
    file = tmp_path / "crm.db"
    assert run("run", RULES, "--events", EVENTS, "--db", f"sqlite:///{file}")[0] == 0
    _sqlite(file, "ALTER TABLE crm_assignments RENAME TO crm_assignments_away")
    code, out, err = run("kpi", "--db", f"sqlite:///{file}", "--from", "2026-01-01", "--to", "2027-01-01")
    assert (code, out) == (1, "")
    assert err == ("crmcore kpi: error: the database failed: no such table: crm_assignments; "
                   "nothing was changed; run the command again when the database is back\n")


def test_every_command_on_a_database_finds_the_tables_of_the_prefix_db_upgrade_made(tmp_path: Path) -> None:
    file = tmp_path / "crm.db"
    db = f"sqlite:///{file}"
    assert run("db", "upgrade", "--db", db, "--prefix", "x_")[0] == 0
    assert run("run", RULES, "--events", EVENTS, "--db", db, "--prefix", "x_")[0] == 0
    code, out, _ = run("kpi", "--db", db, "--prefix", "x_", "--from", "2026-01-01", "--to", "2027-01-01",
                       "--metrics", "registrations", "--format", "json")
    assert (code, json.loads(out)) == (0, [{"registrations": 8}])
    assert run("scan", RULES, "--db", db, "--prefix", "x_", "--now", "2026-04-20T00:00:00Z")[0] == 0
    code, out, _ = run("queue", "dormant", "--db", db, "--prefix", "x_")
    assert code == 0 and out.startswith("dormant: 2 open item(s)")
    import sqlalchemy as sa

    assert not [name for name in sa.inspect(sa.create_engine(db)).get_table_names() if name.startswith("crm_")]


@pytest.mark.parametrize("command", [
    ["run", str(RULES), "--events", str(EVENTS)], ["scan", str(RULES)], ["queue", "q"], ["report", "-o", "r.html"],
    ["kpi", "--from", "2026-01-01", "--to", "2027-01-01"], ["funnel", "--from", "2026-01-01", "--to", "2027-01-01"],
    ["leaderboard", "--metric", "ftd_count", "--from", "2026-01-01", "--to", "2027-01-01"], ["capacity"],
    ["demo", "--clients", "1"], ["db", "upgrade"], ["db", "version"],
])
def test_a_schema_on_sqlite_is_refused_by_every_command_saying_to_use_a_prefix(tmp_path: Path, command: list[str]) -> None:
    assert run("run", RULES, "--events", EVENTS, "--db", f"sqlite:///{tmp_path / 'crm.db'}")[0] == 0
    file = tmp_path / ("demo.db" if command[0] == "demo" else "crm.db")  # (the demo replaces its file)
    code, _, err = run(*command, "--db", f"sqlite:///{file}", "--schema", "crm")
    name = " ".join(command[:2] if command[0] == "db" else command[:1])
    assert code == 1 and err.startswith(f"crmcore {name}: error: schema 'crm': SQLite has no such schema")
    assert err.endswith("(prefix= in Python, --prefix on the command line)\n")
