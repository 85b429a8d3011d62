"""The HTML report in a real headless Chromium: it loads with no console errors, its charts
are drawn, and a screenshot is taken (Debian's chromium; ./scripts/test installs it)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from crmcore.demo import END, MONTH, run
from crmcore.report import dashboard, html_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if _in_ci():
            pytest.fail("playwright is missing: ./scripts/test installs it with crmcore[test]")
        pytest.skip("the browser test needs playwright (pip install -e '.[test]')")
    if CHROMIUM is None:
        if _in_ci():
            pytest.fail("chromium is missing: ./scripts/test installs Debian's chromium")
        pytest.skip("the browser test needs Debian's chromium (./scripts/test installs it)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield launched
        launched.close()


def test_the_report_renders_in_chromium_without_errors(browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    demo = run(40, f"sqlite:///{tmp_path / 'demo.db'}", seed=5)
    report = tmp_path / "report.html"
    data = dashboard(demo.store, *MONTH, as_of=END, targets=demo.engine.rules.targets)
    report.write_text(html_report(demo.store, data, title="crmcore demo broker"), encoding="utf-8")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(report.as_uri())
    page.wait_for_load_state("load")
    assert problems == []
    assert requests == [report.as_uri()]  # self-contained: nothing else is fetched
    assert page.locator("#kpi-tiles .tile").count() == 8
    assert page.locator("#funnel-chart rect").count() == 4  # one bar per stage
    assert page.locator("#cohort-chart rect").count() >= 10  # a bar per weekly cohort of the 13 weeks
    assert page.locator("#flow-chart rect").count() == 13  # net deposits, week by week
    assert page.locator("#funnel-chart").bounding_box()["width"] > 100  # type: ignore[index]
    assert page.locator("#leaderboard tr").count() > 10 and page.locator("#leaderboard svg.meter").count() > 10
    assert page.locator("#capacity tr").count() == 5  # a header and the four desks
    assert page.locator("#queues table").count() >= 1
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    page.close()
