"""Every ```python and ```sh block of the README and docs/ runs, as a reader would run it.

Each page runs in a fresh folder holding a link to the repository's ``examples/``; its blocks
run in order, the python ones in one namespace. A block right after
``<!-- file: PATH -->`` is written to PATH (the rules a page builds up); one after
``<!-- skip: REASON -->`` is not run, and must say why. In python blocks, a ``print(...)``
line with a trailing ``# text`` comment must print exactly that text. In sh blocks each
``crmcore`` line runs through the CLI and must exit 0 (``pip install`` lines are what
./scripts/test does already; ``crmcore demo`` runs at a small size: tests/test_demo.py
runs it in full).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
from pathlib import Path

import pytest

from crmcore.cli import main

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(?:<!-- (file|skip): ([^>]*?) -->\n)?^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)
RUN = {"python", "sh"}
PRINT = re.compile(r"^print\(.*\)\s+#\s?(.*)$")


def blocks(page: Path) -> list[tuple[str | None, str, str, str]]:
    """(marker, marker argument, language, body) of each fenced block, in order."""
    return [(marker or None, argument.strip(), language, body) for marker, argument, language, body in BLOCK.findall(page.read_text())]


def test_the_pages_have_runnable_blocks() -> None:
    runnable = [p.name for p in PAGES if any(lang in RUN and marker != "skip" for marker, _, lang, _ in blocks(p))]
    assert {"README.md", "getting-started.md", "rules-guide.md", "integrating.md"} <= set(runnable)


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


def run_sh(code: str) -> None:
    for line in code.splitlines():
        words = shlex.split(line, comments=True)
        commands: list[list[str]] = [[]]
        for word in words:  # `pip install -e . && crmcore demo`: two commands
            if word == "&&":
                commands.append([])
            else:
                commands[-1].append(word)
        for command in commands:
            if not command or command[:2] == ["pip", "install"]:
                continue
            assert command[0] == "crmcore", f"a sh block may only run crmcore (or pip install): {line!r}"
            argv = ["demo", "--clients", "30"] if command[1:] == ["demo"] else command[1:]
            out, err = io.StringIO(), io.StringIO()
            status = main(argv, out, err)
            assert status == 0, f"{line}\n{out.getvalue()}\n{err.getvalue()}"


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_block_of_the_page_runs(page: Path, tmp_path: Path) -> None:
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    namespace: dict[str, object] = {"__name__": "__doc__"}
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        for marker, argument, language, body in blocks(page):
            if marker == "file":
                target = tmp_path / argument
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(body)
            elif marker == "skip":
                assert argument, f"{page.name}: a skipped block must say why"
            elif language == "python":
                run_python(body, namespace)
            elif language == "sh":
                run_sh(body)
    finally:
        os.chdir(cwd)
