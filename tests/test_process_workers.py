"""Workers as real OS processes: a crash is a kill -9, a pause a SIGSTOP of the whole process.

Each test runs real worker processes against a real redis-server (or the fake, whose clients stay in
the driver) and looks at the processes with psutil and at the history the driver wrote.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from lockchaos.harness.cli import main
from lockchaos.harness.run.driver import RunOptions, RunResult, run_scenario
from lockchaos.harness.run.history import FaultRecord, NoteRecord, OpRecord, Record, read_history
from lockchaos.harness.run.targets import adapter_target, backend_target
from lockchaos.harness.scenarios import FaultStep, find_scenario

pytestmark = [pytest.mark.redis]

ROOT = Path(__file__).resolve().parents[1]
TTL_MS = 300


def worker_processes(of: psutil.Process | None = None) -> list[psutil.Process]:
    """Live worker processes started by ``of`` (default: this process)."""
    me = of or psutil.Process()
    found = []
    try:
        children = me.children()
    except psutil.NoSuchProcess:
        return []
    for c in children:
        try:
            if "child_entry" in " ".join(c.cmdline()) and c.status() != psutil.STATUS_ZOMBIE:
                found.append(c)
        except psutil.NoSuchProcess:
            continue
    return found


def wait_until(cond: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def run(backend: str, scenario: str, tmp_path: Path, on_record: Callable[[Record], None] | None = None,
        **overrides: object) -> RunResult:
    sc = replace(find_scenario(scenario), **overrides) if overrides else find_scenario(scenario)
    result = run_scenario(backend_target(backend), sc, RunOptions(seed=1, ttl_ms=TTL_MS, workers_mode="process"),
                          tmp_path, on_record=on_record)
    assert result.status == "ran", result.reason
    return result


@pytest.mark.redis
def test_crashed_worker_process_is_killed_and_leaves_no_process(tmp_path: Path) -> None:
    at: dict[str, set[int]] = {}

    def snapshot(rec: Record) -> None:
        if isinstance(rec, FaultRecord) and rec.fault == "holder-crash":
            at[rec.phase] = {p.pid for p in worker_processes()}

    result = run("redis", "holder-crash", tmp_path, on_record=snapshot)
    assert len(at["start"]) == 3  # one process per worker, before the kill
    killed = at["start"] - at["end"]
    assert len(killed) == 1, at  # the holder's process is gone by the end of the fault window...
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                   for pid in killed)
    assert worker_processes() == []  # nothing outlives the run
    clients = {r.client for r in read_history(result.run_dir / "history.jsonl") if isinstance(r, OpRecord)}
    assert any(c.endswith("#2") for c in clients)  # a new process took the slot, and worked
    assert result.judgement is not None and not result.judgement.failed


@pytest.mark.redis
def test_paused_worker_process_freezes_its_library_renewal_thread(tmp_path: Path) -> None:
    # The adapter renews every held lease from its own thread every 40 ms (TTL 300 ms). Were only the
    # worker's loop paused (a thread worker), that thread would keep the lease alive through the pause;
    # a SIGSTOP freezes it too, so the lease lapses and another worker takes the lock mid-pause.
    target = adapter_target("tests.renewing_adapters:auto_renewing", "redis")
    result = run_scenario(target, find_scenario("holder-pause"),
                          RunOptions(seed=1, ttl_ms=TTL_MS, workers_mode="process"), tmp_path)
    assert result.status == "ran", result.reason
    records = list(read_history(result.run_dir / "history.jsonl"))
    start, end = (next(r for r in records if isinstance(r, FaultRecord) and r.fault == "holder-pause"
                       and r.phase == phase) for phase in ("start", "end"))
    assert start.detail.get("signal") == "SIGSTOP"
    takeovers = [r for r in records if isinstance(r, OpRecord) and r.op == "acquire" and r.outcome == "ok"
                 and r.client != start.target and start.time_ns < r.invoke_ns < end.time_ns]
    assert takeovers, "the paused process's renewal thread kept its lease alive: it was not frozen"


@pytest.mark.redis
def test_a_run_that_ends_during_a_pause_stops_its_workers_at_once(tmp_path: Path) -> None:
    # The holder's pause (6 s) outlasts the run (1.2 s): the stop resumes the paused process, which
    # waits for the driver's answer to its pause before it can hear the stop (seen in CI: it waited
    # for the drain's 10 s timeout, and liveness judged those 10 s as a failover nobody made).
    result = run("redis", "holder-pause", tmp_path, duration=4, faults=(FaultStep(1.5, "holder-pause", amount=20),))
    records = list(read_history(result.run_dir / "history.jsonl"))
    end = next(r for r in records if isinstance(r, FaultRecord) and r.fault == "holder-pause" and r.phase == "end")
    quiesce = next(r for r in records if isinstance(r, NoteRecord) and r.kind == "quiesce")
    assert quiesce.time_ns - end.time_ns < 2e9, (end, quiesce)
    assert result.judgement is not None and not result.judgement.failed, result.judgement.to_dict()


@pytest.mark.parametrize("scenario", ["holder-crash", "holder-pause", "partition-holder", "release-lost",
                                      "silent-renewer-death"])
def test_catalogue_on_real_time_fake_passes_with_process_workers(scenario: str, tmp_path: Path) -> None:
    result = run("fake", scenario, tmp_path)
    assert result.judgement is not None and not result.judgement.failed, result.judgement.to_dict()
    assert worker_processes() == []


@pytest.mark.redis
@pytest.mark.parametrize("scenario", ["holder-pause-fenced", "server-restart", "latency", "acquire-interrupted"])
def test_catalogue_on_redis_passes_with_process_workers(scenario: str, tmp_path: Path) -> None:
    result = run("redis", scenario, tmp_path)
    assert result.judgement is not None and not result.judgement.failed, result.judgement.to_dict()
    assert worker_processes() == []


def test_soak_cli_takes_workers_mode_and_reproduces_it(tmp_path: Path) -> None:
    out = tmp_path / "run"
    status = main(["soak", "--backend", "fake", "--scenario", "clean-handover", "--workers-mode", "process",
                   "--ttl-ms", "200", "--duration", "1", "--seed", "1", "--out", str(out), "--quiet"])
    assert status == 0
    assert "--workers-mode process" in (out / "fake" / "clean-handover" / "summary.json").read_text()


def test_bad_workers_mode_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["soak", "--backend", "fake", "--workers-mode", "fibers"]) == 2
    assert "--workers-mode" in capsys.readouterr().err


@pytest.mark.redis
def test_killed_harness_leaves_no_worker_process(tmp_path: Path) -> None:
    out = tmp_path / "run"
    log = (tmp_path / "harness.log").open("wb")
    harness = subprocess.Popen(
        [sys.executable, "-m", "lockchaos", "soak", "--backend", "redis", "--scenario", "holder-pause",
         "--ttl-ms", "1000", "--seed", "1", "--out", str(out), "--quiet"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        ps = psutil.Process(harness.pid)
        assert wait_until(lambda: len(worker_processes(ps)) == 3, timeout=60), "workers never started"
        workers = worker_processes(ps)
        time.sleep(1.5)  # into the pause (1.5 TTLs in): one of them may well be SIGSTOPped
    finally:
        os.kill(harness.pid, signal.SIGKILL)
        harness.wait(10)

    def all_gone() -> bool:
        for w in workers:
            try:
                if w.status() != psutil.STATUS_ZOMBIE:
                    return False
            except psutil.NoSuchProcess:
                continue
        return True

    assert wait_until(all_gone, timeout=10), [w.pid for w in workers]


@pytest.mark.redis
def test_factory_failing_in_a_revived_worker_process_is_an_error_handling_finding(tmp_path: Path) -> None:
    # As with a thread worker reopening its client after a crash: reported, retried, the run goes on.
    # A TTL of 1 s leaves the revived process 3.5 s to start and call its factory before the run ends
    # (at 300 ms, 1.05 s: beside two CPU hogs a fresh interpreter took longer to import the adapter).
    target = adapter_target("tests.renewing_adapters:explodes_in_a_revived_worker", "redis")
    result = run_scenario(target, find_scenario("holder-crash"),
                          RunOptions(seed=1, ttl_ms=1000, workers_mode="process"), tmp_path)
    assert result.status == "ran", result.reason
    assert result.judgement is not None and "error-handling" in result.judgement.failing()
    notes = [r for r in read_history(result.run_dir / "history.jsonl")
             if isinstance(r, NoteRecord) and r.kind == "open-error"]
    assert notes and all("exploded in a revived worker process" in n.data["error"] for n in notes)
    assert worker_processes() == []


@pytest.mark.redis
def test_call_in_flight_when_its_process_is_killed_is_recorded_indeterminate(tmp_path: Path) -> None:
    # Every acquire takes 2 s, so nobody holds the lock when the crash comes (the nemesis then picks a
    # worker at random): the kill lands in the middle of its acquire, which may or may not have been
    # applied. The worker never recorded it; the harness must, as indeterminate.
    target = adapter_target("tests.renewing_adapters:slow_acquire", "redis")
    result = run_scenario(target, find_scenario("holder-crash"),
                          RunOptions(seed=1, ttl_ms=TTL_MS, workers_mode="process"), tmp_path)
    assert result.status == "ran", result.reason
    records = list(read_history(result.run_dir / "history.jsonl"))
    crash = next(r for r in records if isinstance(r, FaultRecord) and r.fault == "holder-crash")
    lost = [r for r in records if isinstance(r, OpRecord) and r.client == crash.target]
    assert [(r.op, r.outcome) for r in lost] == [("acquire", "indeterminate")]
    assert lost[0].error is not None and "died during the call" in lost[0].error
    assert lost[0].invoke_ns < crash.time_ns <= lost[0].complete_ns


def test_a_factory_a_worker_process_cannot_import_is_refused_or_run_in_threads() -> None:
    from lockchaos.backends import open_backend
    from lockchaos.backends.base import ConfigurationError
    from lockchaos.harness.run.procworker import uses_processes
    from lockchaos.harness.run.targets import Target

    unnamed = Target("local", "redis", lambda url: open_backend(url))
    assert not uses_processes(unnamed, "auto", False)
    with pytest.raises(ConfigurationError, match="--workers-mode thread"):
        uses_processes(unnamed, "process", False)
    assert uses_processes(backend_target("redis"), "auto", False)
    assert not uses_processes(backend_target("fake"), "auto", False)
    assert not uses_processes(backend_target("redis"), "process", True)  # virtual time: in-process


def test_what_worker_processes_print_goes_to_the_run_directory_not_the_console(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from tests.renewing_adapters import NOISE

    target = adapter_target("tests.renewing_adapters:noisy", "redis")
    result = run_scenario(target, find_scenario("clean-handover"),
                          RunOptions(seed=1, ttl_ms=TTL_MS, workers_mode="process"), tmp_path)
    assert result.status == "ran", result.reason
    assert f"{NOISE} in w0#1" in (result.run_dir / "workers.log").read_text()
    assert f"{NOISE} in w" not in capfd.readouterr().err  # the harness's own opens may print, not workers


def test_a_run_whose_workers_said_nothing_keeps_no_workers_log(tmp_path: Path) -> None:
    result = run("redis", "clean-handover", tmp_path)
    assert not (result.run_dir / "workers.log").exists()


@pytest.mark.redis
def test_call_blocked_past_the_run_end_is_recorded_indeterminate_and_its_process_killed(tmp_path: Path) -> None:
    # Every release blocks 120 s (redis-py retrying in silence): the first worker to release is still
    # inside that call when the run ends. That is a finding about the client (slow-call), recorded as a
    # call of unknown outcome; the harness kills the process instead of failing as infrastructure.
    target = adapter_target("tests.renewing_adapters:blocked_release", "redis")
    result = run_scenario(target, find_scenario("clean-handover"),
                          RunOptions(seed=1, ttl_ms=TTL_MS, workers_mode="process"), tmp_path)
    assert result.status == "ran", result.reason
    records = list(read_history(result.run_dir / "history.jsonl"))
    blocked = [r for r in records if isinstance(r, OpRecord) and r.op == "release"]
    assert blocked and all(r.outcome == "indeterminate" for r in blocked), blocked
    assert all(r.error is not None and "still blocked when the run ended" in r.error for r in blocked)
    assert result.judgement is not None and "slow-call" in result.judgement.failing()
    assert worker_processes() == []
