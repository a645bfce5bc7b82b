"""One pass per run: the driver reads its history once, judges it once, and hands both to the report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import pytest

import lockchaos.harness.checkers as checkers
from lockchaos.harness.checkers import exclusion, fencing
from lockchaos.harness.checkers.model import History, load_history
from lockchaos.harness.report import loading, write_report
from lockchaos.harness.report.html import reproduce_command
from lockchaos.harness.run import driver
from lockchaos.harness.run.driver import RunOptions, RunResult, run_scenario
from lockchaos.harness.run.history import Record, read_history
from lockchaos.harness.run.observations import observe
from lockchaos.harness.run.targets import backend_target
from lockchaos.harness.scenarios import find_scenario

FAKE = backend_target("fake")


def _run(tmp_path: Path, scenario: str, seed: int = 3, *, persistence: bool | None = None) -> RunResult:
    s = find_scenario(scenario)
    if persistence is not None:
        s = replace(s, persistence=persistence)
    return run_scenario(FAKE, s, RunOptions(seed=seed, virtual_time=True), tmp_path)


def test_a_run_loads_its_history_once_for_checks_and_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[object] = []

    def counting(source: Path | Iterable[Record]) -> History:
        loads.append(source)
        return load_history(source)

    for module in (driver, loading, checkers):
        monkeypatch.setattr(module, "load_history", counting)
    r = _run(tmp_path, "holder-pause")
    assert (r.run_dir / "report.html").is_file()
    assert len(loads) == 1, loads


@pytest.mark.parametrize("scenario", ["holder-pause", "holder-pause-fenced", "server-restart", "soak"])
def test_the_drivers_report_is_the_page_lockchaos_report_rebuilds_from_disk(tmp_path: Path, scenario: str) -> None:
    r = _run(tmp_path, scenario, persistence=False if scenario == "server-restart" else None)
    written = (r.run_dir / "report.html").read_bytes()
    (r.run_dir / "report.html").unlink()
    write_report(r.run_dir)  # what `lockchaos report RUN_DIR` does: summary and history from disk
    assert (r.run_dir / "report.html").read_bytes() == written


@pytest.mark.parametrize(("scenario", "persistence"), [("holder-pause", None), ("holder-pause-fenced", None),
                                                       ("server-restart", False)])
def test_observations_report_the_checkers_stale_writes_and_token_regressions(
        tmp_path: Path, scenario: str, persistence: bool | None) -> None:
    r = _run(tmp_path, scenario, persistence=persistence)
    assert r.observations is not None and r.judgement is not None
    stats = {c.checker: c.stats for c in r.judgement.results}
    obs = r.observations
    assert obs.stale_writes == stats[exclusion.NAME_REGISTER][exclusion.STALE_WRITES]
    assert obs.stale_writes_accepted == stats[exclusion.NAME_REGISTER][exclusion.STALE_WRITES_ACCEPTED]
    assert obs.token_regressions == stats[fencing.NAME][fencing.TOKEN_REGRESSIONS]
    assert obs.stale_writes + obs.token_regressions >= 1, "the scenario shows at least one of them"
    # Tallied as recorded, the counts are what the history on disk says.
    assert observe(read_history(r.run_dir / "history.jsonl"), r.judgement.results) == obs


def _imports_in_a_fresh_interpreter(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("GRPC_ENABLE_FORK_SUPPORT", None)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env,
                          check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_report_does_not_import_the_scenario_catalogue() -> None:
    out = _imports_in_a_fresh_interpreter(
        "import sys, lockchaos.harness.report; "
        "print('lockchaos.harness.scenarios' in sys.modules)")
    assert out == "False"


def test_the_backends_set_no_environment_variable_on_import() -> None:
    out = _imports_in_a_fresh_interpreter(
        "import os, lockchaos.backends.etcd, lockchaos.backends.libs.etcd3_lock; "
        "print(os.environ.get('GRPC_ENABLE_FORK_SUPPORT'))")
    assert out == "None"


def test_observations_tallied_from_worker_threads_match_the_history_on_disk(tmp_path: Path) -> None:
    r = run_scenario(FAKE, find_scenario("holder-pause"), RunOptions(seed=3, duration_s=2.0), tmp_path)
    assert r.observations is not None and r.judgement is not None
    assert r.observations.acquisitions >= 1
    assert observe(read_history(r.run_dir / "history.jsonl"), r.judgement.results) == r.observations


def test_a_run_recorded_without_its_command_gets_the_same_one_from_its_meta(tmp_path: Path) -> None:
    r = run_scenario(FAKE, find_scenario("holder-crash"),
                     RunOptions(seed=4, workers=3, duration_s=5.0, virtual_time=True), tmp_path)
    recorded = json.loads((r.run_dir / "summary.json").read_text())["reproduce"]
    meta = load_history(r.run_dir / "history.jsonl").meta
    assert recorded == ("lockchaos soak --backend fake --scenario holder-crash --seed 4 --ttl-ms 1000 "
                        "--workers 3 --duration 5 --virtual-time")
    assert reproduce_command({}, meta) == recorded
