"""`crmcore check`: a one-line summary when valid; every diagnostic and exit 1 otherwise."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

from crmcore.cli import main

EXAMPLES = Path(__file__).parents[1] / "examples" / "rules"


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out)
    return code, out.getvalue()


def test_examples_are_clean() -> None:
    code, output = run("check", str(EXAMPLES))
    assert code == 0
    assert output.startswith("ok: ") and "version" in output
    assert len(output.strip().splitlines()) == 1


def test_errors_are_rendered_with_caret_and_exit_1(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("scores:\n  lead:\n    rules:\n      - {name: a, when: 'client.contry == \"DE\"', points: 1}\n")
    code, output = run("check", str(path))
    assert code == 1
    assert output.splitlines()[:3] == [
        f"{path}:4:26: error: unknown field 'client.contry'; did you mean 'country'? [E200]",
        "          - {name: a, when: 'client.contry == \"DE\"', points: 1}",
        "                             ^",
    ]
    assert output.splitlines()[-1] == "1 error, 0 warnings"


def test_json_format_lists_every_diagnostic(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("scores:\n  lead:\n    rules:\n      - {name: a, when: 'x', points: 'y'}\n")
    code, output = run("check", "--format", "json", str(path))
    data = json.loads(output)
    assert code == 1 and data["ok"] is False
    assert [(d["code"], d["line"], d["column"]) for d in data["diagnostics"]] == [("E200", 4, 26), ("E200", 4, 39)]


def test_json_format_on_success_has_a_summary() -> None:
    code, output = run("check", "--format", "json", str(EXAMPLES))
    data = json.loads(output)
    assert code == 0 and data["ok"] is True and len(data["summary"]["version"]) == 64


def test_warnings_do_not_fail_the_check(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("desks: [{id: d}]\nrouting:\n  registration:\n    - {name: de, when: 'client.country == \"DE\"', assign: {desk: d}}\n")
    code, output = run("check", str(path))
    assert code == 0
    assert ": warning: " in output and "[W500]" in output


def test_the_installed_command_never_prints_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"\xff\xfe not utf-8 {{{")
    result = subprocess.run([sys.executable, "-m", "crmcore.cli", "check", str(path), str(tmp_path / "missing")], capture_output=True, text=True)
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert "E305" in result.stdout
