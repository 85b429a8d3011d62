"""Every fenced block of the README, examples/ and bench/ READMEs and docs/ runs or is checked, as a reader would use it.

Each page runs in a fresh folder holding a copy of the repository's ``examples/`` (a block may
write into it); its blocks run in order, the python ones in one namespace. A block is known by
its fence, or by an HTML comment right before it:

- ```python runs; a ``print(...)`` line with a trailing ``# text`` comment must print exactly that text.
- ```sh runs each ``crmcore`` line through the CLI, which must exit 0. The only other commands
  are those of NOT_RUN, which are not run. ``crmcore demo`` runs at 30 clients
  (tests/test_demo.py runs it at 60 and checks what it prints and writes).
- ```console is a transcript: each ``$ crmcore ...`` line runs as in sh and must print exactly
  the lines that follow it (a ``...`` line stands for any lines).
- ```crm holds language.md's expressions, which tests/test_docs.py type-checks and evaluates.
- ``<!-- file: PATH -->``: the block is written to PATH (the rules a page builds up).
- ``<!-- check: KIND -->``: the block is checked as CHECKS[KIND] says, not run.
- ``<!-- skip: REASON -->``: neither run nor checked, and it must say why.

Any other block fails the test, naming its page and line.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import shutil
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml

import crmcore
from crmcore.cli import build_parser, main
from crmcore.rules.checker import check_text
from crmcore.rules.interpreter import Scope, evaluate
from crmcore.rules.schema import Env

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "examples" / "README.md", ROOT / "bench" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(?:<!-- (file|skip|check):\s*([^>]*?)\s*-->\n)?^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)
FENCE = re.compile(r"^```", re.M)
MARKER = re.compile(r"<!-- (?:file|skip|check):")
RUN = {"python", "sh", "console"}
CRM_EXPRESSIONS_PAGE = "language.md"  # the page tests/test_docs.py reads
PRINT = re.compile(r"^print\(.*\)\s+#\s?(.*)$")
NOT_RUN = {  # commands a sh block may show that are not run here, and why
    ("pip", "install"): "./scripts/test has installed crmcore",
    ("./scripts/test",): "it is what runs this test",
}


class Block(NamedTuple):
    line: int
    marker: str | None
    argument: str
    language: str
    body: str


def blocks(page: Path) -> list[Block]:
    """Each fenced block, in order, with the line of its opening fence."""
    text = page.read_text()
    found = []
    for match in BLOCK.finditer(text):
        marker, argument, language, body = match.groups()
        found.append(Block(text.count("\n", 0, match.start(3)) + 1, marker, (argument or "").strip(), language, body))
    assert len(FENCE.findall(text)) == 2 * len(found), f"{page.name}: a fence the test does not pair (indented or unclosed?)"
    assert len(MARKER.findall(text)) == sum(b.marker is not None for b in found), f"{page.name}: a marker not right before a fence"
    return found


def problem(page: Path, block: Block) -> str | None:
    """Why the test would neither run nor check this block (None: it does one or the other)."""
    if block.marker == "skip" and not block.argument:
        return "a skipped block must say why"
    if block.marker == "check" and block.argument not in CHECKS:
        return f"no check named {block.argument!r} (known: {', '.join(CHECKS)})"
    if block.marker is not None or block.language in RUN:
        return None
    if block.language == "crm":
        return None if page.name == CRM_EXPRESSIONS_PAGE else f"a ```crm block outside {CRM_EXPRESSIONS_PAGE} is checked by nothing"
    return f"a ```{block.language} block that is neither run nor checked: mark it file:, check: or skip: (see this test's docstring)"


def test_every_block_is_run_checked_or_skipped_with_a_reason() -> None:
    problems = [f"{page.relative_to(ROOT)}:{block.line}: {why}"
                for page in PAGES for block in blocks(page) if (why := problem(page, block))]
    assert not problems, "\n".join(problems)


def test_the_pages_have_runnable_blocks() -> None:
    runnable = {p.relative_to(ROOT).as_posix() for p in PAGES if any(b.language in RUN and b.marker is None for b in blocks(p))}
    assert {"README.md", "examples/README.md", "docs/getting-started.md", "docs/rules-guide.md", "docs/integrating.md",
            "docs/testing-rules.md", "docs/language.md"} <= runnable


def run_python(code: str, namespace: dict[str, object]) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "<doc block>", "exec"), namespace)
    printed = out.getvalue().splitlines()
    prints = [PRINT.match(line.strip()) for line in code.splitlines() if line.strip().startswith("print(")]
    if len(prints) == len(printed):  # one line each: check the ones that say what they print
        for match, line in zip(prints, printed, strict=True):
            if match is not None:
                assert line == match.group(1).strip(), f"{code}\nprinted {line!r}"


def commands(line: str) -> Iterator[list[str]]:
    """The commands of one shell line, `a && b` being two; NOT_RUN ones left out."""
    command: list[str] = []
    for word in [*shlex.split(line, comments=True), "&&"]:
        if word != "&&":
            command.append(word)
            continue
        if command and not any(tuple(command[: len(known)]) == known for known in NOT_RUN):
            assert command[0] == "crmcore", f"a sh block may only run crmcore (or {', '.join(map(' '.join, NOT_RUN))}): {line!r}"
            yield command
        command = []


def run_crmcore(command: list[str]) -> str:
    """Run one ``crmcore ...`` command through the CLI; it must exit 0. Returns what it printed."""
    argv = ["demo", "--clients", "30"] if command[1:] == ["demo"] else command[1:]
    out, err = io.StringIO(), io.StringIO()
    status = main(argv, out, err)
    assert status == 0, f"{shlex.join(command)}\n{out.getvalue()}\n{err.getvalue()}"
    return out.getvalue() + err.getvalue()


def run_sh(code: str) -> None:
    for line in code.splitlines():
        for command in commands(line):
            run_crmcore(command)


def run_console(code: str) -> None:
    """``$ command`` lines, each followed by exactly what it prints (``...``: any lines)."""
    steps: list[tuple[str, list[str]]] = []
    for line in code.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            assert steps, f"a transcript starts with a '$ ' command: {line!r}"
            steps[-1][1].append(line.rstrip())
    for line, expected in steps:
        printed = "".join(run_crmcore(command) for command in commands(line))
        pattern = "\n".join(".*" if want == "..." else re.escape(want) for want in expected)
        assert re.fullmatch(pattern, printed.rstrip("\n"), re.S), f"$ {line}\nexpected:\n" + "\n".join(expected) + f"\nprinted:\n{printed}"


def check_yaml_rules(body: str) -> None:
    crmcore.loads(body, "rules.yaml")  # raises RuleError with every diagnostic


def check_usage(body: str) -> None:
    """A synopsis: each line's ``crmcore COMMAND`` exists and has every option the line shows."""
    for line in body.splitlines():
        words = line.split()
        assert words[0] == "crmcore", line
        shown = io.StringIO()
        with contextlib.redirect_stdout(shown), pytest.raises(SystemExit):
            build_parser().parse_args([words[1], "--help"])
        for option in re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", line):
            assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", shown.getvalue()), f"{line}: crmcore {words[1]} has no {option}"


def check_ci(body: str) -> None:
    """A CI configuration: valid YAML, and each crmcore command in it is one the CLI accepts (parsed, not run)."""
    def strings(node: object) -> Iterator[str]:
        if isinstance(node, str):
            yield node
        elif isinstance(node, dict):
            for value in node.values():
                yield from strings(value)
        elif isinstance(node, list):
            for item in node:
                yield from strings(item)
    shown = [s for s in strings(yaml.safe_load(body)) if s.startswith("crmcore ")]
    assert shown, "a CI snippet without crmcore commands"
    for line in shown:
        refused = io.StringIO()
        with contextlib.redirect_stderr(refused), contextlib.suppress(SystemExit):  # argparse exits on what it refuses
            build_parser().parse_args(shlex.split(line)[1:])
        assert not refused.getvalue(), f"{line}: {refused.getvalue()}"


def rows(body: str) -> Iterator[tuple[str, str]]:
    """``EXPRESSION   WHAT IT GIVES`` rows of a table (columns apart by 3+ spaces); continuation lines left out."""
    for line in body.splitlines():
        if line.strip() and not line.startswith(" "):
            expression, given = re.split(r"\s{3,}", line, maxsplit=1)
            yield expression, given


def check_null_results(body: str) -> None:
    scope = Scope(client={"balance": 500}, now=timedelta(0), lists={}, scores={}, bands={}, agent=None, event=None, window=lambda *args: 0)
    for expression, given in rows(body):
        value = evaluate(check_text(expression, Env()), scope)
        assert str(value).lower() == given.split()[0], f"{expression}: {value}, the page says {given}"


def check_refusals(body: str) -> None:
    for expression, given in rows(body):
        with pytest.raises(crmcore.RuleError) as refused:
            check_text(expression, Env())
        assert f"[{given.split()[0]}]" in str(refused.value), f"{expression}: {refused.value}"


CHECKS: dict[str, Callable[[str], None]] = {
    "yaml rules": check_yaml_rules,
    "usage": check_usage,
    "ci": check_ci,
    "null results": check_null_results,
    "refusals": check_refusals,
}


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_every_block_of_the_page_runs_or_is_checked(page: Path, tmp_path: Path) -> None:
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    namespace: dict[str, object] = {"__name__": "__doc__"}
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        for block in blocks(page):
            assert problem(page, block) is None, f"{page.relative_to(ROOT)}:{block.line}: {problem(page, block)}"
            if block.marker == "file":
                target = tmp_path / block.argument
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(block.body)
            elif block.marker == "skip":
                continue
            elif block.marker == "check":
                CHECKS[block.argument](block.body)
            elif block.language == "python":
                run_python(block.body, namespace)
            elif block.language == "sh":
                run_sh(block.body)
            elif block.language == "console":
                run_console(block.body)
    finally:
        os.chdir(cwd)


# The machinery above can fail: each kind of check refuses a block that says something untrue.

def test_a_block_neither_run_nor_checked_is_named_with_its_page_and_line(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# A page\n\n```text\ncrmcore check rules/\n```\n\n<!-- skip: -->\n```sh\nx\n```\n")
    text, skipped = blocks(page)
    assert text.line == 3 and "```text block that is neither run nor checked" in (problem(page, text) or "")
    assert problem(page, skipped) == "a skipped block must say why"


def test_a_sh_block_runs_only_crmcore() -> None:
    with pytest.raises(AssertionError, match="may only run crmcore"):
        run_sh("rm -rf examples/")


def test_a_transcript_must_print_what_it_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    run_console("$ crmcore check examples/rules\n...\n")
    with pytest.raises(AssertionError, match="expected"):
        run_console("$ crmcore check examples/rules\nok\n")


def test_a_usage_line_with_an_option_its_command_lacks_fails() -> None:
    check_usage("crmcore test PATH... [--run REGEX] [-v]")
    with pytest.raises(AssertionError, match="has no --runs"):
        check_usage("crmcore test PATH... [--runs REGEX]")


def test_a_ci_command_the_cli_refuses_fails() -> None:
    with pytest.raises(AssertionError, match="unrecognized arguments: --coverage-min"):
        check_ci("job:\n  script:\n    - crmcore test rules/tests/ --coverage-min 90\n")


def test_a_null_result_the_interpreter_does_not_give_fails() -> None:
    with pytest.raises(AssertionError, match="the page says true"):
        check_null_results("null in [1, 2]               true\n")


def test_a_refusal_with_another_code_fails() -> None:
    with pytest.raises(AssertionError):
        check_refusals("null < true                                E200 (bools are not ordered)\n")
