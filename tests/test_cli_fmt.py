"""`crmcore fmt PATH --to crm|yaml [-o OUT]`: a file is printed, a folder is written into OUT,
the output loads into the same rules and formatting it again changes nothing."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

import crmcore
from crmcore.cli import main

ROOT = Path(__file__).parents[1]
EXAMPLES = ROOT / "examples" / "rules"
EXAMPLES_CRM = ROOT / "examples" / "rules-crm"


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


def test_a_yaml_file_is_printed_as_crm() -> None:
    code, output, _ = run("fmt", str(EXAMPLES / "scoring.yaml"), "--to", "crm")
    assert code == 0
    assert output.startswith("# Scores, recomputed after every event of a client.\n")  # the file's comments are kept
    assert "\n\nscore lead {\n  rule tier1_country when client.country in TIER1 => 20\n" in output
    assert "  band cold >= 0\n}\n" in output


def test_a_crm_file_is_printed_as_yaml() -> None:
    code, output, _ = run("fmt", str(EXAMPLES_CRM / "routing.crm"), "--to", "yaml")
    assert code == 0
    assert "\nversion: 1\n\nrouting:\n  registration:\n    # A client who names their account manager" in output
    assert "\n    # from an agent) goes straight to that person.\n    - name: designated_manager\n" in output
    assert "      assign: {agent: 'client.manager_id'}\n" in output


def test_a_file_can_be_written_with_o(tmp_path: Path) -> None:
    target = tmp_path / "scoring.crm"
    code, output, _ = run("fmt", str(EXAMPLES / "scoring.yaml"), "--to", "crm", "-o", str(target))
    assert (code, output) == (0, "")
    assert "\nscore lead {\n" in target.read_text()


@pytest.mark.parametrize(("source", "to", "suffix"), [(EXAMPLES, "crm", ".crm"), (EXAMPLES_CRM, "yaml", ".yaml")])
def test_a_folder_is_written_into_out_and_loads_into_the_same_rules(tmp_path: Path, source: Path, to: str, suffix: str) -> None:
    out = tmp_path / "out"
    code, _, message = run("fmt", str(source), "--to", to, "-o", str(out))
    assert code == 0
    assert "wrote 4 file(s)" in message
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}{suffix}" for n in ("broker", "retention", "routing", "scoring"))
    assert crmcore.load_rules(out).version == crmcore.load_rules(EXAMPLES).version


def test_the_shipped_crm_examples_are_what_fmt_writes(tmp_path: Path) -> None:
    code, _, _ = run("fmt", str(EXAMPLES), "--to", "crm", "-o", str(tmp_path))
    assert code == 0
    for written in tmp_path.iterdir():
        assert (EXAMPLES_CRM / written.name).read_text() == written.read_text(), written.name


@pytest.mark.parametrize("to", ["crm", "yaml"])
def test_fmt_of_fmt_output_is_identical(tmp_path: Path, to: str) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    assert run("fmt", str(EXAMPLES), "--to", to, "-o", str(first))[0] == 0
    assert run("fmt", str(first), "--to", to, "-o", str(second))[0] == 0
    for path in first.iterdir():
        assert (second / path.name).read_text() == path.read_text()


def test_a_folder_needs_o(tmp_path: Path) -> None:
    code, output, message = run("fmt", str(EXAMPLES), "--to", "crm")
    assert (code, output) == (1, "")
    assert "-o OUT" in message


def test_a_missing_path_is_an_error(tmp_path: Path) -> None:
    code, _, message = run("fmt", str(tmp_path / "nope.yaml"), "--to", "crm")
    assert code == 1
    assert "no such file or folder" in message


def test_a_broken_file_prints_every_diagnostic_and_writes_nothing(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "good.yaml").write_text("desks: [{id: sales}]\n")
    (rules / "bad.crm").write_text("score s {\n  rule a when client.country == => 1\n  rule b => (1\n}\n")
    (rules / "worse.yaml").write_text("desks: [{id: x, kindd: sales}]\n")
    out = tmp_path / "out"
    code, output, message = run("fmt", str(rules), "--to", "yaml", "-o", str(out))
    assert (code, output) == (1, "")
    assert f"{rules / 'bad.crm'}:2:33: error: " in message
    assert f"{rules / 'worse.yaml'}:1:17: error: unknown key 'kindd'" in message
    assert message.rstrip().endswith("2 errors, 0 warnings")
    assert not out.exists()


def test_an_expression_syntax_error_in_yaml_is_reported_with_its_position(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("scores:\n  s:\n    rules:\n      - {name: a, when: 'client.balance >', points: 1}\n")
    code, _, message = run("fmt", str(path), "--to", "crm")
    assert code == 1
    assert message.startswith(f"{path}:4:42: error: the expression ends too early")


def test_a_file_of_a_larger_rule_set_converts_alone(tmp_path: Path) -> None:
    """Type checking needs the whole rule set: fmt checks a file's syntax and structure only."""
    path = tmp_path / "routing.yaml"
    path.write_text("routing:\n  ftd:\n    - {name: a, when: 'client.country in DACH', assign: {desk: retention}}\n")
    code, output, _ = run("fmt", str(path), "--to", "crm")
    assert code == 0
    assert output == "route ftd {\n  rule a when client.country in DACH => desk retention\n}\n"


def test_expressions_come_out_canonical(tmp_path: Path) -> None:
    path = tmp_path / "s.crm"
    path.write_text("score s {\n  rule a when ((client.balance > 1)) and (true) => (1 + 2) * 3  # note\n}\n")
    code, output, _ = run("fmt", str(path), "--to", "crm")
    assert code == 0
    assert output == "score s {\n  # note\n  rule a when client.balance > 1 and true => (1 + 2) * 3\n}\n"  # the comment above its rule


def test_two_files_that_would_write_the_same_output_are_refused(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "a.yaml").write_text("desks: [{id: x}]\n")
    (rules / "a.yml").write_text("desks: [{id: y}]\n")
    code, _, message = run("fmt", str(rules), "--to", "crm", "-o", str(tmp_path / "out"))
    assert code == 1
    assert "converts to a.crm too" in message


def test_a_file_written_into_an_existing_folder_gets_the_new_suffix(tmp_path: Path) -> None:
    code, _, _ = run("fmt", str(EXAMPLES_CRM / "scoring.crm"), "--to", "yaml", "-o", str(tmp_path))
    assert code == 0
    assert "\nversion: 1\n\nscores:\n  lead:\n" in (tmp_path / "scoring.yaml").read_text()


def test_a_conversion_that_would_change_the_rules_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from crmcore.rules import convert

    real = convert.to_crm
    monkeypatch.setattr(convert, "to_crm", lambda model, texts: real(model, texts).replace("=> 20", "=> 21"))
    out = tmp_path / "out"
    code, _, message = run("fmt", str(EXAMPLES), "--to", "crm", "-o", str(out))
    assert code == 1
    assert "crmcore fmt: error: the converted rules have another version" in message
    assert not out.exists()


def test_the_spec_example_round_trips_through_stdout(tmp_path: Path) -> None:
    spec = Path(__file__).parent / "data" / "spec_rules.yaml"
    code, crm, _ = run("fmt", str(spec), "--to", "crm")
    assert code == 0
    (tmp_path / "spec.crm").write_text(crm)
    code, yaml, _ = run("fmt", str(tmp_path / "spec.crm"), "--to", "yaml")
    assert code == 0
    (tmp_path / "spec.yaml").write_text(yaml)
    expected = crmcore.load_rules(spec).version
    assert crmcore.load_rules(tmp_path / "spec.crm").version == expected
    assert crmcore.load_rules(tmp_path / "spec.yaml").version == expected
