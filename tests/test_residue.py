"""The residue check: what a lock left on its server after the run, on real servers and the fake."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from lockchaos.harness.run.driver import RunOptions, RunResult, run_scenario
from lockchaos.harness.run.targets import Target, adapter_target, backend_target
from lockchaos.harness.scenarios import find_scenario

pytestmark = [pytest.mark.redis, pytest.mark.etcd]

TTL = {"fake": 300, "redis": 300, "etcd": 1000}


def run(target: Target, scenario: str, tmp_path: Path, ttl_ms: int, **overrides: Any) -> RunResult:
    sc = replace(find_scenario(scenario), **overrides) if overrides else find_scenario(scenario)
    result = run_scenario(target, sc, RunOptions(seed=1, ttl_ms=ttl_ms), tmp_path)
    assert result.status == "ran", result.reason
    return result


def residue(result: RunResult) -> tuple[str, dict[str, Any], list[str]]:
    assert result.judgement is not None
    check = next(r for r in result.judgement.results if r.checker == "residue")
    return check.verdict(), check.stats, [f.kind for f in check.findings]


@pytest.mark.parametrize("backend,scenario", [
    ("fake", "holder-crash"),
    pytest.param("redis", "holder-crash", marks=pytest.mark.redis),
    pytest.param("redis", "acquire-interrupted", marks=pytest.mark.redis),
    pytest.param("etcd", "contention", marks=pytest.mark.etcd),
    pytest.param("etcd", "acquire-interrupted", marks=pytest.mark.etcd),
])
def test_our_locks_leave_no_residue(backend: str, scenario: str, tmp_path: Path) -> None:
    verdict, stats, kinds = residue(run(backend_target(backend), scenario, tmp_path, TTL[backend]))
    assert stats["inspected"] and not stats["errors"], stats
    assert verdict == "pass", kinds
    if backend == "redis":  # the fencing counter never expires, by design, and is not a lock
        assert stats["keys_at_stop"] >= 1 and stats["keys_without_ttl"] == ["lockchaos:{lockchaos/soak}:token"]
    if backend == "etcd":
        assert stats["leases_at_stop"] is not None and stats["leases_at_end"] == 0


@pytest.mark.redis
def test_lock_without_ttl_left_by_a_dead_holder_is_a_violation(tmp_path: Path) -> None:
    result = run(adapter_target("tests.residue_adapters:never_expires", "redis"), "holder-crash", tmp_path,
                 TTL["redis"])
    verdict, stats, kinds = residue(result)
    assert verdict == "fail" and "never-expiring-lock" in kinds
    assert "nx:lockchaos/soak" in stats["keys_without_ttl"]


@pytest.mark.redis
def test_key_outside_the_locks_keyspace_is_reported(tmp_path: Path) -> None:
    result = run(adapter_target("tests.residue_adapters:writes_a_registry", "redis"), "clean-handover", tmp_path,
                 TTL["redis"], duration=3)
    verdict, _, kinds = residue(result)
    assert verdict == "known-unsafe" and kinds == ["stray-key"]


@pytest.mark.etcd
def test_leases_granted_and_forgotten_are_reported(tmp_path: Path) -> None:
    result = run(adapter_target("tests.residue_adapters:leaks_leases", "etcd"), "contention", tmp_path,
                 TTL["etcd"], duration=3)
    verdict, stats, kinds = residue(result)
    assert verdict == "known-unsafe" and "leaked-lease" in kinds
    assert stats["orphan_leases_at_stop"] > 0


def test_residue_is_judged_on_virtual_time_too(tmp_path: Path) -> None:
    result = run_scenario(backend_target("fake"), find_scenario("holder-crash"),
                          RunOptions(seed=1, ttl_ms=1000, virtual_time=True), tmp_path)
    verdict, stats, _ = residue(result)
    assert verdict == "pass" and stats["inspected"] and stats["keys_at_end"] == 0


def test_history_recorded_before_the_residue_check_is_judged_without_it(tmp_path: Path) -> None:
    from lockchaos.harness.checkers.verdicts import judge
    from lockchaos.harness.run.history import HISTORY_FILE

    result = run_scenario(backend_target("fake"), find_scenario("clean-handover"),
                          RunOptions(seed=1, ttl_ms=1000, virtual_time=True), tmp_path)
    history = result.run_dir / HISTORY_FILE
    lines = history.read_text().splitlines(keepends=True)
    history.write_text("".join(line for line in lines if '"kind":"residue"' not in line))
    assert len(history.read_text().splitlines()) == len(lines) - 1
    check = next(r for r in judge(history).results if r.checker == "residue")
    assert check.verdict() == "pass" and check.stats == {"inspected": False}
