"""Reports: the self-contained HTML page per run, the soak's index.html and junit.xml, ``lockchaos report``."""

from __future__ import annotations

import io
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from rich.console import Console

from lockchaos.backends.base import ConfigurationError
from lockchaos.harness.checkers import CHECKERS
from lockchaos.harness.checkers.model import load_history
from lockchaos.harness.checkers.verdicts import judge, update_summary
from lockchaos.harness.cli.soak import SoakPlan, run_soak
from lockchaos.harness.report import report_command, write_index, write_junit, write_report
from lockchaos.harness.report.svg import MAX_ELEMENTS, render_timeline
from lockchaos.harness.report.timeline import extract
from lockchaos.harness.run.driver import RunOptions, RunResult, run_scenario
from lockchaos.harness.run.history import FaultRecord, HistoryWriter, NoteRecord, OpRecord, WriteRecord
from lockchaos.harness.run.targets import adapter_target, backend_target
from lockchaos.harness.scenarios import find_scenario
from tests.catalogue_params import every_scenario

FAKE = backend_target("fake")
MS = 1_000_000
CAPS = {"ttl_granularity_ms": 1, "min_ttl_ms": 1, "expiry_lag_ms": 0, "durable": True, "fencing_tokens": True}


def _run(tmp_path: Path, scenario: str, seed: int = 3) -> RunResult:
    return run_scenario(FAKE, find_scenario(scenario), RunOptions(seed=seed, virtual_time=True), tmp_path)


def _page(path: Path) -> ET.Element:
    """The whole page, parsed as XML: the report is written to be well-formed."""
    return ET.fromstring(path.read_text(encoding="utf-8").removeprefix("<!DOCTYPE html>\n"))


def _timeline(page: ET.Element) -> ET.Element:
    svg = page.find(".//svg[@id='timeline']")
    assert svg is not None, "no <svg id=timeline>"
    return svg


def _with_class(root: ET.Element, cls: str) -> list[ET.Element]:
    return [e for e in root.iter() if cls in e.get("class", "").split()]


def _planted(path: Path) -> Path:
    """Two owners granted the lock at once (history lines 2 and 4), with a partition of ``a`` between."""
    w = HistoryWriter(path)
    w.append(NoteRecord("meta", 0, {"ttl_ms": 1000, "capabilities": CAPS, "backend": "handmade",
                                    "scenario": "planted", "seed": 7, "virtual_time": False}))
    w.append(OpRecord("a#1", "acquire", "k", {"owner": "a#1", "ttl_ms": 1000}, 0, 5 * MS, "ok",
                      {"owner": "a#1", "token": 1, "ttl_ms": 1000}))
    w.append(FaultRecord("partition", "start", "a#1", 20 * MS))
    w.append(OpRecord("b#1", "acquire", "k", {"owner": "b#1", "ttl_ms": 1000}, 100 * MS, 105 * MS, "ok",
                      {"owner": "b#1", "token": 2, "ttl_ms": 1000}))
    w.append(WriteRecord("b#1", "k", 2, 110 * MS, True, True, 1))
    w.append(FaultRecord("partition", "end", "a#1", 300 * MS))
    w.append(NoteRecord("end", 400 * MS, {}))
    w.close()
    return path


# --- the run report ---------------------------------------------------------------------------


def test_report_shows_a_lane_per_worker_a_window_per_fault_and_a_marker_per_finding(tmp_path: Path) -> None:
    r = _run(tmp_path, "holder-pause")
    page = _page(write_report(r.run_dir))
    svg = _timeline(page)
    h = load_history(r.run_dir / "history.jsonl")
    lanes = _with_class(svg, "lane")
    assert [ln.get("data-lane") for ln in lanes] == [f"w{i}" for i in range(h.meta["workers"])]
    windows = _with_class(svg, "fault-window")
    assert len(windows) == len(h.faults) == 1 and windows[0].get("data-fault") == "holder-pause"
    labels = [e.text for e in _with_class(svg, "fault-label")]
    assert labels == [f"holder-pause {h.faults[0].target}"]
    markers = _with_class(svg, "finding-marker")
    assert len(markers) == 1 and "known-unsafe" in markers[0].get("class", "")
    row = page.find(f".//tr[@id='{markers[0].get('href', '').removeprefix('#')}']")
    assert row is not None
    summary = json.loads((r.run_dir / "summary.json").read_text())
    finding = summary["checks"]["checkers"]["exclusion-register"]["first"][0]
    text = "".join(row.itertext())
    assert "stale-write" in text and ", ".join(map(str, finding["lines"])) in text


def test_report_draws_grants_beliefs_and_writes_of_the_stale_holder(tmp_path: Path) -> None:
    r = _run(tmp_path, "holder-pause")
    svg = _timeline(_page(write_report(r.run_dir)))
    w0 = next(ln for ln in _with_class(svg, "lane") if ln.get("data-lane") == "w0")
    grants = [float(e.get("x", 0)) + float(e.get("width", 0)) for e in _with_class(w0, "grant")]
    beliefs = [float(e.get("x", 0)) + float(e.get("width", 0)) for e in _with_class(w0, "believed")]
    assert grants and beliefs and _with_class(w0, "writes-accepted")
    assert beliefs[0] > grants[0] + 50, "the paused holder believed it held the lock long after its grant ended"


def test_report_of_a_planted_violation_marks_it_red_and_links_its_evidence(tmp_path: Path) -> None:
    history = _planted(tmp_path / "history.jsonl")
    page = _page(write_report(tmp_path))  # no summary.json: the report judges the history itself
    svg = _timeline(page)
    assert len(_with_class(svg, "lane")) == 2
    assert len(_with_class(svg, "fault-window")) == 1
    markers = _with_class(svg, "finding-marker")
    assert len(markers) == 1 and "violation" in markers[0].get("class", "").split()
    assert markers[0].get("href") == "#finding-1"
    row = page.find(".//tr[@id='finding-1']")
    assert row is not None
    text = " ".join(row.itertext())
    assert "exclusion-grants/double-grant" in text and "violation" in text and "2, 4" in text
    assert '"client":"b#1"' in text, "the evidence lines are quoted from the history"
    assert judge(history).failed
    badge = page.find(".//h1/span")
    assert badge is not None and badge.text == "fail"


def test_report_header_names_the_run_its_verdicts_failover_and_reproducer(tmp_path: Path) -> None:
    r = _run(tmp_path, "holder-crash", seed=4)
    text = " ".join(_page(write_report(r.run_dir)).itertext())
    for expected in ("fake / holder-crash", "seed 4", "TTL 1000 ms", "virtual time", "liveness", "p50", "p99",
                     "max", "lockchaos soak --backend fake --scenario holder-crash --seed 4",
                     find_scenario("holder-crash").description):
        assert expected in text, expected


_EXTERNAL = [re.compile(p, re.I) for p in (r"https?://", r"""(src|href)\s*=\s*["']?\s*//""", r"<script",
                                           r"@import", r"url\(", r"<link", r"<img", r"<iframe")]


@pytest.mark.parametrize("scenario", ["holder-pause", "server-restart", "partition-holder", "soak"])
def test_report_references_no_external_resource(tmp_path: Path, scenario: str) -> None:
    text = write_report(_run(tmp_path, scenario).run_dir).read_text()
    for pattern in _EXTERNAL:
        assert not pattern.search(text), pattern.pattern
    hrefs = re.findall(r'href="([^"]*)"', text)
    assert all(h.startswith("#") for h in hrefs)


def test_report_of_a_handmade_history_references_nothing_external(tmp_path: Path) -> None:
    text = write_report(_planted(tmp_path / "history.jsonl").parent).read_text()
    assert not any(p.search(text) for p in _EXTERNAL)


@pytest.mark.parametrize("scenario", every_scenario())
def test_every_scenario_report_is_well_formed_with_one_lane_per_worker(tmp_path: Path, scenario: str) -> None:
    r = _run(tmp_path, scenario, seed=5)
    page = _page(write_report(r.run_dir))
    svg = _timeline(page)
    workers = {c.split("#")[0] for c in (o.rec.client for o in load_history(r.run_dir / "history.jsonl").ops)
               if c != "observer"}
    assert {ln.get("data-lane") for ln in _with_class(svg, "lane")} == workers
    assert sum(1 for _ in svg.iter()) <= MAX_ELEMENTS


def test_a_long_history_is_merged_under_a_small_budget_and_says_so(tmp_path: Path) -> None:
    r = _run(tmp_path, "soak")
    h = load_history(r.run_dir / "history.jsonl")
    full = render_timeline(extract(h, []))
    assert not full.downsampled
    budget = full.elements * 3 // 4
    small = render_timeline(extract(h, []), budget=budget)
    assert small.downsampled and small.elements <= budget and small.notes
    assert len(_with_class(ET.fromstring(small.svg), "lane")) == h.meta["workers"]


@pytest.mark.slow
def test_hour_long_soak_report_is_downsampled_and_stays_under_the_element_cap(tmp_path: Path) -> None:
    r = run_scenario(FAKE, find_scenario("soak"),
                     RunOptions(seed=1, virtual_time=True, duration_s=3600, workers=16), tmp_path)
    path = write_report(r.run_dir)
    page = _page(path)
    svg = _timeline(page)
    assert sum(1 for _ in svg.iter()) <= MAX_ELEMENTS
    assert "downsampled" in svg.get("class", "").split()
    note = page.find(".//p[@id='downsampled']")
    assert note is not None and "Downsampled" in "".join(note.itertext())
    assert len(_with_class(svg, "lane")) == 16
    assert path.stat().st_size < 2_000_000
    assert "--workers 16 --duration 3600" in "".join(page.itertext())


def test_a_skipped_run_gets_a_page_with_its_reason(tmp_path: Path) -> None:
    target = adapter_target("tests.broken_adapters:correct", "none")
    r = run_scenario(target, find_scenario("partition-holder"), RunOptions(seed=1, virtual_time=True), tmp_path)
    assert r.status == "skipped"
    text = " ".join(_page(write_report(r.run_dir)).itertext())
    assert "skipped" in text and r.reason in text


# --- a soak's index.html and junit.xml ----------------------------------------------------------


@pytest.fixture
def soak_dir(tmp_path: Path) -> Path:
    """A soak's directory as ``lockchaos soak`` writes it (fake: two scenarios), plus a skipped run of
    an adapter and a run with a planted violation, added to its index.json."""
    out = tmp_path / "soak"
    plan = SoakPlan((FAKE,), (find_scenario("holder-pause"), find_scenario("clean-handover")),
                    RunOptions(seed=2, virtual_time=True), None, out)
    assert run_soak(plan, Console(file=io.StringIO())) == 0
    index = json.loads((out / "index.json").read_text())
    skipped = run_scenario(adapter_target("tests.broken_adapters:correct", "none"), find_scenario("partition-holder"),
                           RunOptions(seed=2, virtual_time=True), out)
    planted_dir = out / "handmade" / "planted"
    planted_dir.mkdir(parents=True)
    update_summary(planted_dir, judge(_planted(planted_dir / "history.jsonl")))
    index["runs"] += [
        {"backend": skipped.backend, "scenario": "partition-holder", "status": "skipped", "reason": skipped.reason,
         "verdict": None, "dir": str(skipped.run_dir.relative_to(out))},
        {"backend": "handmade", "scenario": "planted", "status": "ran", "reason": "", "verdict": "fail",
         "dir": "handmade/planted"},
    ]
    (out / "index.json").write_text(json.dumps(index))
    return out


def test_junit_has_a_suite_per_backend_a_case_per_checker_and_right_counts(soak_dir: Path) -> None:
    root = ET.parse(write_junit(soak_dir)).getroot()
    assert root.tag == "testsuites"
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert set(suites) == {"lockchaos.fake", "lockchaos.tests.broken_adapters:correct@none", "lockchaos.handmade"}
    for suite in suites.values():
        cases = suite.findall("testcase")
        assert suite.get("tests") == str(len(cases))
        assert suite.get("failures") == str(sum(1 for c in cases if c.find("failure") is not None))
        assert suite.get("skipped") == str(sum(1 for c in cases if c.find("skipped") is not None))
    fake = suites["lockchaos.fake"].findall("testcase")
    assert len(fake) == 2 * len(CHECKERS)  # two runs, one case per checker
    assert {c.get("classname") for c in fake} == {"lockchaos.fake.holder-pause", "lockchaos.fake.clean-handover"}
    assert {c.get("name") for c in fake} == {"conformance", "exclusion-grants", "exclusion-register", "fencing",
                                             "liveness", "error-handling", "slow-call", "residue"}
    assert root.get("tests") == str(sum(len(s.findall("testcase")) for s in suites.values()))


def test_junit_a_failing_checker_is_a_failure_with_its_first_finding(soak_dir: Path) -> None:
    root = ET.parse(write_junit(soak_dir)).getroot()
    suite = root.find("testsuite[@name='lockchaos.handmade']")
    assert suite is not None and suite.get("failures") == "1"
    case = suite.find("testcase[@name='exclusion-grants']")
    assert case is not None and case.get("classname") == "lockchaos.handmade.planted"
    failure = case.find("failure")
    assert failure is not None and "double-grant" in failure.get("message", "")
    assert "history lines 2, 4" in (failure.text or "")


def test_junit_known_unsafe_passes_with_its_findings_in_system_out(soak_dir: Path) -> None:
    root = ET.parse(write_junit(soak_dir)).getroot()
    case = root.find("testsuite/testcase[@classname='lockchaos.fake.holder-pause'][@name='exclusion-register']")
    assert case is not None and case.find("failure") is None
    out = case.find("system-out")
    assert out is not None and "stale-write" in (out.text or "")


def test_junit_a_skipped_scenario_is_one_skipped_case_with_the_reason(soak_dir: Path) -> None:
    root = ET.parse(write_junit(soak_dir)).getroot()
    suite = root.find("testsuite[@name='lockchaos.tests.broken_adapters:correct@none']")
    assert suite is not None and suite.get("skipped") == "1" and suite.get("tests") == "1"
    case = suite.find("testcase")
    assert case is not None and case.get("name") == "run"
    assert case.get("classname") == "lockchaos.tests.broken_adapters:correct@none.partition-holder"
    skipped = case.find("skipped")
    assert skipped is not None and "partition" in skipped.get("message", "")


def test_junit_an_infrastructure_failure_is_an_error(soak_dir: Path) -> None:
    index = json.loads((soak_dir / "index.json").read_text())
    index["infrastructure_failures"] = ["redis/server-pause: cannot reach redis://127.0.0.1:1/0: refused <&>"]
    (soak_dir / "index.json").write_text(json.dumps(index))
    root = ET.parse(write_junit(soak_dir)).getroot()
    suite = root.find("testsuite[@name='lockchaos.redis']")
    assert suite is not None and suite.get("errors") == "1"
    error = suite.find("testcase/error")
    assert error is not None and error.get("message", "").endswith("refused <&>")


def test_index_links_every_run_report_relatively_and_shows_skips_with_reasons(soak_dir: Path) -> None:
    index = json.loads((soak_dir / "index.json").read_text())
    for run in index["runs"]:
        write_report(soak_dir / run["dir"])
    page = _page(write_index(soak_dir))
    links = {a.get("href") for a in page.iter("a")}
    for run in index["runs"]:
        cell = f"{run['dir']}/report.html"
        if run["status"] == "ran":
            assert cell in links, cell
            assert (soak_dir / cell).is_file()
    assert all(not h.startswith(("/", "http", "file:")) for h in links if h)
    text = " ".join(page.itertext())
    skipped = next(r for r in index["runs"] if r["status"] == "skipped")
    assert skipped["reason"] and skipped["reason"] in text
    cells = [td.get("data-verdict", "") for td in page.iter("td") if td.get("data-verdict")]
    assert sorted(cells) == sorted(["known-unsafe", "pass", "skipped", "fail"])


# --- lockchaos report ---------------------------------------------------------------------------


def test_report_command_rebuilds_every_run_plus_index_and_junit(soak_dir: Path) -> None:
    console = Console(file=io.StringIO(), width=300)
    assert report_command(soak_dir, console) == 0
    printed = console.file.getvalue()  # type: ignore[attr-defined]
    for name in ("index.html", "junit.xml", "fake/holder-pause/report.html", "handmade/planted/report.html"):
        assert (soak_dir / name).is_file()
        assert str(soak_dir / name) in printed


def test_report_command_on_a_history_file_writes_report_beside_it(tmp_path: Path) -> None:
    history = _planted(tmp_path / "elsewhere.jsonl")
    assert report_command(history, Console(file=io.StringIO())) == 0
    assert _with_class(_timeline(_page(tmp_path / "report.html")), "finding-marker")


def test_report_command_on_a_run_directory_writes_its_report(tmp_path: Path) -> None:
    r = _run(tmp_path, "clean-handover")
    assert report_command(r.run_dir, Console(file=io.StringIO())) == 0
    assert (r.run_dir / "report.html").is_file()


@pytest.mark.parametrize("content", [None, "not json at all\n{}\n", '{"type":"op"}\n'])
def test_report_command_on_missing_or_corrupt_input_raises_a_one_line_configuration_error(
        tmp_path: Path, content: str | None) -> None:
    target = tmp_path / "run"
    if content is not None:
        target.mkdir()
        (target / "history.jsonl").write_text(content)
    with pytest.raises(ConfigurationError) as err:
        report_command(target, Console(file=io.StringIO()))
    assert "\n" not in str(err.value) and str(target) in str(err.value)


def test_report_command_on_an_empty_directory_raises_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"no history\.jsonl"):
        report_command(tmp_path, Console(file=io.StringIO()))
