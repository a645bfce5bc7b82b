"""The soak driver on the fake: scenarios, faults, histories, virtual time."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from lockchaos.harness.run.driver import RunOptions, run_scenario
from lockchaos.harness.run.history import FaultRecord, OpRecord, WriteRecord, read_history
from lockchaos.harness.run.targets import adapter_target, backend_target
from lockchaos.harness.scenarios import find_scenario
from tests.catalogue_params import every_scenario

FAKE = backend_target("fake")


def _records(run_dir: Path) -> list[object]:
    return list(read_history(run_dir / "history.jsonl"))


def test_virtual_time_same_seed_gives_same_history_bytes(tmp_path: Path) -> None:
    digests = []
    for name in ("a", "b"):
        r = run_scenario(FAKE, find_scenario("soak"), RunOptions(seed=11, virtual_time=True), tmp_path / name)
        digests.append(hashlib.sha256((r.run_dir / "history.jsonl").read_bytes()).hexdigest())
    assert digests[0] == digests[1]


def test_virtual_time_different_seeds_give_different_histories(tmp_path: Path) -> None:
    runs = [run_scenario(FAKE, find_scenario("soak"), RunOptions(seed=s, virtual_time=True), tmp_path / str(s))
            for s in (1, 2)]
    assert (runs[0].run_dir / "history.jsonl").read_bytes() != (runs[1].run_dir / "history.jsonl").read_bytes()


@pytest.mark.parametrize("scenario", every_scenario())
def test_every_scenario_runs_on_the_fake_in_virtual_time(scenario: str, tmp_path: Path) -> None:
    r = run_scenario(FAKE, find_scenario(scenario), RunOptions(seed=5, virtual_time=True), tmp_path)
    assert r.status == "ran"
    recs = _records(r.run_dir)
    assert any(isinstance(x, OpRecord) and x.op == "acquire" and x.outcome == "ok" for x in recs)
    starts = [x for x in recs if isinstance(x, FaultRecord) and x.phase == "start"]
    if find_scenario(scenario).faults or find_scenario(scenario).random_faults:
        assert starts, "a faulty scenario recorded no fault"
    assert r.observations is not None and r.observations.final_holder is None, "a lease outlived the run"


def _stale_writes(run_dir: Path) -> list[WriteRecord]:
    """Writes carrying a token older than one granted before them."""
    granted = 0
    stale = []
    for x in _records(run_dir):
        if isinstance(x, OpRecord) and x.op == "acquire" and x.outcome == "ok" and x.lease:
            granted = max(granted, x.lease["token"])
        if isinstance(x, WriteRecord) and x.token < granted:
            stale.append(x)
    return stale


def test_holder_pause_without_fencing_lets_the_stale_write_through(tmp_path: Path) -> None:
    r = run_scenario(FAKE, find_scenario("holder-pause"), RunOptions(seed=3, virtual_time=True), tmp_path)
    stale = _stale_writes(r.run_dir)
    assert stale and all(w.accepted for w in stale)
    pauses = [x for x in _records(r.run_dir) if isinstance(x, FaultRecord) and x.fault == "holder-pause"]
    assert [p.phase for p in pauses] == ["start", "end"]
    assert stale[0].client == pauses[0].target and stale[0].time_ns >= pauses[1].time_ns


def test_holder_pause_with_fencing_rejects_the_stale_write(tmp_path: Path) -> None:
    r = run_scenario(FAKE, find_scenario("holder-pause-fenced"), RunOptions(seed=3, virtual_time=True), tmp_path)
    stale = _stale_writes(r.run_dir)
    assert stale and not any(w.accepted for w in stale)


def test_server_restart_without_durability_restarts_tokens_on_the_fake(tmp_path: Path) -> None:
    from dataclasses import replace

    scenario = replace(find_scenario("server-restart"), persistence=False)
    r = run_scenario(FAKE, scenario, RunOptions(seed=3, virtual_time=True), tmp_path)
    assert r.observations is not None and r.observations.token_regressions >= 1


def test_fault_an_environment_cannot_take_skips_with_the_reason(tmp_path: Path) -> None:
    target = adapter_target("tests.broken_adapters:correct", "none")
    r = run_scenario(target, find_scenario("partition-holder"), RunOptions(seed=1, virtual_time=True), tmp_path)
    assert r.status == "skipped"
    assert "partition" in r.reason and "network" in r.reason


def test_real_time_fake_run_records_monotonic_windows(tmp_path: Path) -> None:
    r = run_scenario(FAKE, find_scenario("holder-crash"), RunOptions(seed=2, ttl_ms=100), tmp_path)
    ops = [x for x in _records(r.run_dir) if isinstance(x, OpRecord)]
    assert ops and all(0 <= op.invoke_ns <= op.complete_ns for op in ops)
    assert r.wall_s >= 0.8  # 8 TTLs of 100 ms really elapsed


def test_torn_last_line_of_a_killed_run_is_ignored(tmp_path: Path) -> None:
    r = run_scenario(FAKE, find_scenario("clean-handover"), RunOptions(seed=1, virtual_time=True), tmp_path)
    path = r.run_dir / "history.jsonl"
    whole = path.read_text()
    path.write_text(whole + whole.splitlines()[3][:25])
    assert len(list(read_history(path))) == len(whole.splitlines())
