"""The report in a real browser: Debian's Chromium, headless, driven by Playwright (no browser download).

A real run's report must show the timeline, its fault windows and the finding marker, a planted
violation must be marked and linked to its evidence, and the page must load nothing but itself.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from lockchaos.harness.report import write_report
from lockchaos.harness.run.driver import RunOptions, run_scenario
from lockchaos.harness.run.targets import backend_target
from lockchaos.harness.scenarios import find_scenario
from tests.test_check_cli import _planted

pytestmark = [pytest.mark.browser, pytest.mark.redis]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        raise RuntimeError("Debian's chromium is required for the browser test (make test installs it)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def open_page(browser: Browser, report: Path) -> tuple[Page, list[str]]:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(report.as_uri())
    page.wait_for_load_state("load")
    return page, requests


def test_real_run_report_shows_timeline_faults_and_findings(browser: Browser, tmp_path: Path) -> None:
    r = run_scenario(backend_target("redis"), find_scenario("holder-pause"), RunOptions(seed=1, ttl_ms=300),
                     tmp_path)
    page, requests = open_page(browser, r.run_dir / "report.html")
    assert page.locator("#timeline").is_visible()
    assert page.locator("#timeline .lane").count() == 3
    assert page.locator("#timeline .fault-window").count() >= 1
    assert page.locator("#timeline .finding-marker").count() >= 1
    assert "known-unsafe" in page.inner_text("body")
    assert requests == [(r.run_dir / "report.html").as_uri()], f"the page loaded more than itself: {requests}"
    page.close()


def test_planted_violation_is_marked_and_linked_to_its_evidence(browser: Browser, tmp_path: Path) -> None:
    history = _planted(tmp_path / "history.jsonl")
    report = write_report(tmp_path)
    page, requests = open_page(browser, report)
    markers = page.locator("#timeline .finding-marker")
    assert markers.count() >= 1
    href = markers.first.get_attribute("href")
    assert href is not None and href.startswith("#finding-")
    row = page.locator(href)
    assert row.count() == 1
    text = row.inner_text()
    assert "double-grant" in text and "2, 3" in text
    assert history.is_file()
    assert all(u.startswith("file://") for u in requests)
    page.close()
