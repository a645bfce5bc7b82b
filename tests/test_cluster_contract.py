"""The failover rules judge what a cluster backend declares: honest clusters pass (or show the hazard
they declare), and adapters lying about replication or failover time fail.

Each test starts its own cluster on free loopback ports (stopped on exit) and runs only the rule it
pins, so the file stays within tens of seconds.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from lockchaos.backends import open_backend
from lockchaos.backends.base import LockBackend
from lockchaos.harness.cli import main
from lockchaos.harness.contract import RuleResult, find_rule, run_rule
from lockchaos.harness.run.targets import Target, provisioned
from tests.broken_cluster_adapters import etcd_cluster_understating_failover, sentinel_claiming_linearizable

FAILOVER_TIME = "declared_failover_time_holds"
KEPT_ACROSS_KILL = "declared_replication_keeps_a_grant_across_leader_kill"
KEPT_CUT_OFF = "declared_replication_keeps_a_grant_acknowledged_by_a_cut_off_leader"


def _run(kind: str, factory: Callable[[str], LockBackend], *rules: str) -> dict[str, RuleResult]:
    with provisioned(Target(f"{factory.__name__}@{kind}", kind, factory)) as env:
        return {name: run_rule(find_rule(name), env.client_factory(), server=env.server_control())
                for name in rules}


@pytest.mark.etcd
def test_etcd_cluster_keeps_its_declared_failover_time_and_replication() -> None:
    results = _run("etcd-cluster", open_backend, FAILOVER_TIME, KEPT_ACROSS_KILL, KEPT_CUT_OFF)
    assert {name: r.status for name, r in results.items()} == dict.fromkeys(results, "passed"), results


@pytest.mark.etcd
def test_etcd_cluster_understating_its_failover_time_fails() -> None:
    result = _run("etcd-cluster", etcd_cluster_understating_failover, FAILOVER_TIME)[FAILOVER_TIME]
    assert result.status == "failed", result
    assert "declared failover_ms=1" in result.message


@pytest.mark.redis
def test_sentinel_losing_a_grant_on_promotion_is_its_declared_hazard() -> None:
    result = _run("redis-sentinel", open_backend, KEPT_CUT_OFF)[KEPT_CUT_OFF]
    assert result.status == "skipped", result
    assert "lock lost on promotion" in result.message and "declared hazard" in result.message


@pytest.mark.redis
def test_sentinel_claiming_linearizable_replication_fails() -> None:
    result = _run("redis-sentinel", sentinel_claiming_linearizable, KEPT_CUT_OFF)[KEPT_CUT_OFF]
    assert result.status == "failed", result
    assert "lock lost on promotion" in result.message and "linearizable" in result.message


@pytest.mark.redis
def test_sentinel_keeps_its_declared_failover_time() -> None:
    result = _run("redis-sentinel", open_backend, FAILOVER_TIME)[FAILOVER_TIME]
    assert result.status == "passed", result


@pytest.mark.redis
def test_failover_rules_skip_on_a_single_server() -> None:
    with provisioned(Target("redis", "redis", open_backend)) as env:
        results = [run_rule(find_rule(n), env.client_factory(), server=env.server_control())
                   for n in (FAILOVER_TIME, KEPT_ACROSS_KILL, KEPT_CUT_OFF)]
    assert [r.status for r in results] == ["skipped"] * 3, results
    assert all("replication='none'" in r.message for r in results)


@pytest.mark.redis
def test_failover_rules_skip_on_redlock_without_a_leader() -> None:
    result = _run("redlock", open_backend, FAILOVER_TIME)[FAILOVER_TIME]
    assert result.status == "skipped", result
    assert "cannot reach a leader" in result.message


@pytest.mark.redis
def test_contract_command_passes_redis_sentinel_with_its_declared_hazard(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["contract", "--backend", "redis-sentinel"]) == 0
    out = capsys.readouterr().out
    assert "0 failed" in out and "declared_failover_time_holds" in out
