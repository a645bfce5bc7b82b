"""The same scenarios against real redis-server and etcd, with real faults through real proxies.

TTLs are short (Redis 300 ms, etcd 1 s: its minimum with the fast flags) so each scenario takes a
few seconds; histories are judged by the same checkers as the fake's.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from lockchaos.harness.run.driver import RunOptions, RunResult, run_scenario
from lockchaos.harness.run.history import OpRecord, WriteRecord, read_history
from lockchaos.harness.run.targets import backend_target
from lockchaos.harness.scenarios import find_scenario

pytestmark = [pytest.mark.redis, pytest.mark.etcd]

TTL = {"redis": 300, "etcd": 1000}


def run(backend: str, scenario: str, tmp_path: Path, seed: int = 3, **overrides: object) -> RunResult:
    sc = replace(find_scenario(scenario), **overrides) if overrides else find_scenario(scenario)
    result = run_scenario(backend_target(backend), sc, RunOptions(seed=seed, ttl_ms=TTL[backend]), tmp_path)
    assert result.status == "ran", result.reason
    return result


def stale_writes(result: RunResult) -> list[WriteRecord]:
    granted, stale = 0, []
    for x in read_history(result.run_dir / "history.jsonl"):
        if isinstance(x, OpRecord) and x.op == "acquire" and x.outcome == "ok" and x.lease:
            granted = max(granted, x.lease["token"])
        elif isinstance(x, WriteRecord) and x.token < granted:
            stale.append(x)
    return stale


def no_server_left() -> bool:
    return not any(p.info["name"] in ("redis-server", "etcd") and p.info["status"] != psutil.STATUS_ZOMBIE
                   for p in psutil.process_iter(["name", "status"])
                   if p.info["name"] in ("redis-server", "etcd") and p.ppid() == psutil.Process().pid)


@pytest.mark.parametrize("backend", ["redis", "etcd"])
def test_holder_pause_stale_write_goes_through_without_fencing(backend: str, tmp_path: Path) -> None:
    r = run(backend, "holder-pause", tmp_path)
    stale = stale_writes(r)
    assert stale and all(w.accepted for w in stale)
    assert r.judgement is not None and not r.judgement.failed
    assert r.judgement.verdict == "known-unsafe"


@pytest.mark.parametrize("backend", ["redis", "etcd"])
def test_holder_pause_stale_write_is_rejected_with_fencing(backend: str, tmp_path: Path) -> None:
    r = run(backend, "holder-pause-fenced", tmp_path)
    stale = stale_writes(r)
    assert stale and not any(w.accepted for w in stale)
    assert r.judgement is not None and r.judgement.verdict == "pass"


def test_redis_restart_without_persistence_loses_lock_and_token_counter(tmp_path: Path) -> None:
    r = run("redis", "server-restart", tmp_path)
    assert r.observations is not None and r.observations.token_regressions >= 1
    assert r.judgement is not None and not r.judgement.failed
    kinds = {f["kind"] for c in r.judgement.to_dict()["checkers"].values() for f in c["first"]}
    assert "token-regression" in kinds


def test_redis_restart_with_aof_keeps_lock_and_token_counter(tmp_path: Path) -> None:
    r = run("redis", "server-restart-durable", tmp_path)
    assert r.observations is not None and r.observations.token_regressions == 0
    assert r.judgement is not None and r.judgement.verdict == "pass", r.judgement.to_dict()


def test_etcd_restart_keeps_lock_and_tokens(tmp_path: Path) -> None:
    r = run("etcd", "server-restart-durable", tmp_path)
    assert r.observations is not None and r.observations.token_regressions == 0
    assert r.judgement is not None and not r.judgement.failed, r.judgement.to_dict()


@pytest.mark.parametrize("backend", ["redis", "etcd"])
def test_partition_of_the_holder_fails_over_without_violations(backend: str, tmp_path: Path) -> None:
    r = run(backend, "partition-holder", tmp_path)
    assert r.judgement is not None and not r.judgement.failed, r.judgement.to_dict()
    assert r.observations is not None and r.observations.faults.get("partition") == 1


def test_redis_server_pause_keeps_every_check(tmp_path: Path) -> None:
    r = run("redis", "server-pause", tmp_path)
    assert r.judgement is not None and not r.judgement.failed, r.judgement.to_dict()


def test_clock_jump_on_etcd_is_skipped_with_the_reason(tmp_path: Path) -> None:
    r = run_scenario(backend_target("etcd"), find_scenario("clock-jump"), RunOptions(seed=1, ttl_ms=1000), tmp_path)
    assert r.status == "skipped" and "clock" in r.reason


def test_runs_leave_no_server_behind(tmp_path: Path) -> None:
    run("redis", "holder-crash", tmp_path)
    assert no_server_left()
