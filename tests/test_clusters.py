"""Process-mode clusters: they start with a leader, fail over under real kill -9, and leave nothing.

Each cluster test starts its own members on free loopback ports; soaks run at the shortest TTL the
backend allows so that the file stays within a few tens of seconds.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import psutil
import pytest

from lockchaos.backends import open_backend
from lockchaos.backends.base import BackendUnavailable, ConfigurationError, Lease
from lockchaos.backends.sentinel import parse_sentinel_url
from lockchaos.harness.checkers import check_history
from lockchaos.harness.checkers.verdicts import judge
from lockchaos.harness.cli import main
from lockchaos.harness.run.driver import RunOptions, run_scenario
from lockchaos.harness.run.history import FaultRecord, NoteRecord, OpRecord, Record
from lockchaos.harness.run.targets import backend_target
from lockchaos.harness.scenarios import find_scenario
from lockchaos.harness.servers.clusters import EtcdCluster, SentinelCluster

RECOVERY_S = 15.0
"""Bound for a client to be granted again after a leader dies: far above the declared failover, for
a loaded CI machine; the declared bound itself is judged by the liveness checker in the soak test."""


def _alive(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


def _renew_until_granted(lock: object, key: str, owner: str, ttl_ms: int) -> Lease:
    deadline = time.monotonic() + RECOVERY_S
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            lease = lock.renew(key, owner, ttl_ms)  # type: ignore[attr-defined]
            assert lease is not None, "the lock was lost across the leader change"
            return lease  # type: ignore[no-any-return]
        except BackendUnavailable as exc:  # the call that hit the dead leader: outcome unknown, retry
            last = exc
            time.sleep(0.05)
    raise AssertionError(f"no renew granted within {RECOVERY_S} s after the leader died: {last}")


@pytest.mark.etcd
def test_etcd_cluster_starts_with_a_leader_and_stops_leaving_nothing() -> None:
    cluster = EtcdCluster().start()
    try:
        pids = [m.pid for m in cluster.members if m.pid is not None]
        dirs = [m.workdir for m in cluster.members]
        assert len(pids) == 3 and len(_alive(pids)) == 3
        assert cluster.leader() in {"m0", "m1", "m2"}
        assert cluster.url.count(",") == 2
    finally:
        cluster.stop()
    assert _alive(pids) == []
    assert all(d is not None and not d.exists() for d in dirs)


@pytest.mark.etcd
def test_etcd_leader_kill_elects_a_new_leader_and_the_holder_keeps_its_lock() -> None:
    with EtcdCluster() as cluster:
        lock = open_backend(cluster.url)
        try:
            granted = lock.acquire("k", "a", 5000)
            assert granted is not None
            old = cluster.leader()
            cluster.kill_member(old)
            new = cluster.leader()
            assert new != old
            renewed = _renew_until_granted(lock, "k", "a", 5000)
            assert renewed.token == granted.token  # linearizable: the grant survived the election
            cluster.restart_member(old)
            assert cluster.member(old).is_running()
            assert lock.capabilities.replication == "linearizable"
        finally:
            lock.close()


@pytest.mark.etcd
@pytest.mark.slow
def test_soak_leader_crash_on_etcd_cluster_passes_and_reports_failover_time(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    code = main(["soak", "--backend", "etcd-cluster", "--scenario", "leader-crash", "--seed", "5",
                 "--ttl-ms", "1000", "--quiet", "--out", str(out)])
    summary = json.loads((out / "etcd-cluster" / "leader-crash" / "summary.json").read_text())
    assert code == 0, summary["checks"]
    assert summary["checks"]["verdict"] == "pass"
    live = summary["checks"]["checkers"]["liveness"]["stats"]
    assert live["leader_failovers"] == 1
    assert 0 < live["leader_max_s"] <= live["leader_bound_s"]


@pytest.mark.redis
def test_sentinel_group_starts_with_a_primary_and_stops_leaving_nothing() -> None:
    cluster = SentinelCluster().start()
    try:
        pids = [m.pid for m in cluster.members if m.pid is not None]
        dirs = [m.workdir for m in cluster.members]
        assert len(cluster.nodes) == 3 and len(cluster.sentinels) == 3 and len(_alive(pids)) == 6
        assert cluster.leader() == "r0"
        assert [n.role() for n in cluster.nodes] == ["master", "slave", "slave"]
    finally:
        cluster.stop()
    assert _alive(pids) == []
    assert all(d is not None and not d.exists() for d in dirs)


@pytest.mark.redis
def test_sentinel_promotes_a_replica_when_the_primary_dies_and_a_client_follows() -> None:
    with SentinelCluster() as cluster:
        lock = open_backend(cluster.url)
        try:
            assert lock.capabilities.replication == "async"
            granted = lock.acquire("k", "a", 10_000)
            assert granted is not None
            old = cluster.leader()
            cluster.kill_member(old)
            lease = _renew_until_granted(lock, "k", "a", 10_000)  # replicas were in sync: nothing lost
            assert lease.token == granted.token
            assert cluster.leader() != old
        finally:
            lock.close()


@pytest.mark.redis
@pytest.mark.slow
def test_soak_leader_crash_on_redis_sentinel_completes_with_a_verdict(tmp_path: Path) -> None:
    result = run_scenario(backend_target("redis-sentinel"), find_scenario("leader-crash"),
                          RunOptions(seed=3, ttl_ms=1000), tmp_path)
    assert result.status == "ran", result.reason
    assert result.judgement is not None
    assert result.judgement.verdict in ("pass", "known-unsafe"), result.judgement.to_dict()
    live = result.judgement.to_dict()["checkers"]["liveness"]["stats"]
    assert live["leader_failovers"] == 1


@pytest.mark.redis
def test_leader_faults_are_skipped_with_the_reason_on_a_single_server(tmp_path: Path) -> None:
    for name in ("leader-crash", "leader-pause"):
        result = run_scenario(backend_target("redis"), find_scenario(name), RunOptions(seed=1, ttl_ms=300),
                              tmp_path / name)
        assert result.status == "skipped"
        assert "no leader" in result.reason


def test_leader_faults_on_the_reference_lose_no_lock(tmp_path: Path) -> None:
    for name in ("leader-crash", "leader-pause"):
        result = run_scenario(backend_target("fake"), find_scenario(name),
                              RunOptions(seed=1, virtual_time=True), tmp_path / name)
        assert result.status == "ran" and result.judgement is not None
        assert result.judgement.verdict == "pass", result.judgement.to_dict()


# --- judging a failover: hand-written histories (TTL 1000 ms), no server -------------------------------

MS = 1_000_000


def _history(replication: str, *, failover_ms: int = 500) -> list[Record]:
    """a holds token 7; the leader dies; the new leader has neither the lock nor the counter."""
    caps = {"ttl_granularity_ms": 1, "min_ttl_ms": 1, "expiry_lag_ms": 0, "durable": False,
            "fencing_tokens": True, "replication": replication, "failover_ms": failover_ms}
    return [
        NoteRecord("meta", 0, {"ttl_ms": 1000, "capabilities": caps, "plan": {"retry_every": 0.1}}),
        OpRecord("a", "acquire", "k", {"owner": "a", "ttl_ms": 1000}, 0, 5 * MS, "ok",
                 {"owner": "a", "token": 7, "ttl_ms": 1000}),
        FaultRecord("leader-crash", "start", "leader:r0", 100 * MS),
        FaultRecord("leader-crash", "end", "leader:r0", 200 * MS),
        OpRecord("b", "acquire", "k", {"owner": "b", "ttl_ms": 1000}, 300 * MS, 305 * MS, "ok",
                 {"owner": "b", "token": 1, "ttl_ms": 1000}),
        OpRecord("a", "renew", "k", {"owner": "a", "ttl_ms": 1000}, 320 * MS, 325 * MS, "fail", None),
    ]


def _severities(records: list[Record]) -> dict[str, set[str]]:
    _, res = check_history(records)
    out: dict[str, set[str]] = {}
    for r in res:
        for f in r.findings:
            out.setdefault(f.severity, set()).add(f"{r.checker}/{f.kind}")
    return out


def test_lock_lost_on_promotion_is_known_unsafe_under_declared_async_replication() -> None:
    found = _severities(_history("async"))
    assert "violation" not in found, found
    assert {"exclusion-grants/double-grant", "fencing/lost-on-promotion",
            "fencing/token-regression"} <= found["known-unsafe"]
    assert judge(_history("async")).verdict == "known-unsafe"


def test_lock_lost_on_failover_is_a_failure_under_declared_linearizable_replication() -> None:
    found = _severities(_history("linearizable"))
    assert {"exclusion-grants/double-grant", "fencing/token-regression",
            "conformance/renew-refused-for-holder"} <= found["violation"]
    assert judge(_history("linearizable")).failed


def test_slow_leader_failover_is_judged_against_the_declared_failover_time() -> None:
    records = _history("linearizable", failover_ms=100)[:4]
    late = OpRecord("a", "renew", "k", {"owner": "a", "ttl_ms": 1000}, 2900 * MS, 2905 * MS, "ok",
                    {"owner": "a", "token": 7, "ttl_ms": 1000})
    _, res = check_history([*records, late, NoteRecord("end", 3000 * MS, {})])
    live = next(r for r in res if r.checker == "liveness")
    assert [f.kind for f in live.violations] == ["slow-failover"]
    assert live.stats["leader_failovers"] == 1 and live.stats["leader_max_s"] == 2.805


@pytest.mark.parametrize("url", [
    "redis+sentinel://127.0.0.1:26379",  # no service
    "redis+sentinel://127.0.0.1:26379/a/b",  # two services
    "redis+sentinel://:26379/mymaster",  # no host
    "redis+sentinel://127.0.0.1:26379/mymaster?durable=1",  # not an option here
    "redis+sentinel://u:p@127.0.0.1:26379/mymaster",  # credentials
])
def test_bad_sentinel_url_is_one_configuration_error_before_any_io(url: str) -> None:
    with pytest.raises(ConfigurationError):
        open_backend(url)


def test_sentinel_url_names_every_sentinel_and_the_service() -> None:
    config = parse_sentinel_url("redis+sentinel://h1:1,h2/svc?timeout_ms=300")
    assert config.sentinels == (("h1", 1), ("h2", 26379))
    assert (config.service, config.timeout_ms) == ("svc", 300)


@pytest.mark.redis
def test_sigkilled_harness_leaves_no_member_no_sentinel_and_no_temp_dir(tmp_path: Path) -> None:
    from tests.test_harness_dies_clean import dirs_of, gone, start_soak, wait_until

    out = tmp_path / "run"
    proc = start_soak(out, "--backend", "redis-sentinel", "--scenario", "clean-handover", "--duration", "60")
    harness = psutil.Process(proc.pid)

    def members() -> list[psutil.Process]:
        try:
            return [c for c in harness.children(recursive=True)
                    if c.name() in ("redis-server", "redis-sentinel", "redis-check-rdb")]
        except psutil.NoSuchProcess:
            return []

    try:
        assert wait_until(lambda: len(members()) == 6 and any(
            h.stat().st_size > 1000 for h in out.rglob("history.jsonl")), timeout=30), "the soak never got going"
        started = members()
    finally:
        proc.kill()
    assert proc.wait(10) == -9
    assert wait_until(lambda: all(gone(m) for m in started), timeout=10), "a member outlived the harness"
    assert wait_until(lambda: not dirs_of(proc.pid), timeout=10), f"temp dirs left: {dirs_of(proc.pid)}"
